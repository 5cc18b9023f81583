package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/internal/logtest"
)

// TestLogFormatFlag runs `fraise xds` with --log-format text and json: its
// start line names its address, its stop line what it drained, and every
// line is in the format asked for.
func TestLogFormatFlag(t *testing.T) {
	dir := t.TempDir()
	noenv := func(string) string { return "" }
	if err := cli.Run(context.Background(), []string{"certs", "--dir", dir}, noenv, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	c := devcerts.FilesIn(filepath.Join(dir, "certs"))
	cfgPath := filepath.Join(dir, "fraise.toml")
	cfg := fmt.Sprintf("[tls]\nca = %q\nserver_cert = %q\nserver_key = %q\n[xds]\ngrpc_addr = \"127.0.0.1:0\"\n", c.CACert, c.ServerCert, c.ServerKey)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, format string
		parse        func(line string) (map[string]string, error)
	}{
		{"text", "text", parseLogfmt},
		{"json", "json", func(line string) (map[string]string, error) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return nil, err
			}
			out := map[string]string{}
			for k, v := range m {
				out[k] = fmt.Sprint(v)
			}
			return out, nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready.json")
			ctx, cancel := context.WithCancel(context.Background())
			var logs logtest.Buffer
			done := make(chan error, 1)
			go func() {
				done <- cli.Run(ctx, []string{"xds", "--profile", "dev", "--config", cfgPath, "--log-format", tt.format, "--ready-file", ready}, noenv, &bytes.Buffer{}, &logs)
			}()
			var addr map[string]string
			deadline := time.Now().Add(30 * time.Second)
			for {
				if b, err := os.ReadFile(ready); err == nil && json.Unmarshal(b, &addr) == nil {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("fraise xds exited: %v\n%s", err, logs.String())
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("fraise xds not ready after 30s\n%s", logs.String())
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("fraise xds: %v", err)
			}
			var started, stopped bool
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				m, err := tt.parse(line)
				if err != nil {
					t.Fatalf("got line %q, want %s: %v", line, tt.format, err)
				}
				if m["msg"] == "listening" && m["component"] == "xds" && m["addr"] == addr["xds"] {
					started = true
				}
				if m["msg"] == "stopped" && m["component"] == "xds" && m["drained"] != "" && m["took"] != "" {
					stopped = true
				}
			}
			if !started || !stopped {
				t.Errorf("got\n%s\nwant a start line naming %s and a stop line saying what drained", logs.String(), addr["xds"])
			}
		})
	}
}

// parseLogfmt reads a slog text line's keys and values.
func parseLogfmt(line string) (map[string]string, error) {
	if !strings.HasPrefix(line, "time=") {
		return nil, fmt.Errorf("not logfmt")
	}
	m := map[string]string{}
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		k := line[i : i+eq]
		i += eq + 1
		var v string
		if i < len(line) && line[i] == '"' {
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
				}
			}
			v = line[i+1 : j]
			i = j + 1
		} else {
			j := i
			for j < len(line) && line[j] != ' ' {
				j++
			}
			v = line[i:j]
			i = j
		}
		m[k] = v
	}
	return m, nil
}
