package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// TestLogLinesRepeatNoKey runs the stack at debug level, sends requests
// through it, and reads every line it logged: no line names a key twice,
// neither fraise's (logfmt) nor Envoy's access log (JSON).
func TestLogLinesRepeatNoKey(t *testing.T) {
	t.Parallel()
	s := stack.StartWith(t, stack.Options{Env: map[string]string{"FRAISE_LOG_LEVEL": "debug"}})
	tok := s.Token(t, demo.TenantAcme, "alice", "viewer")
	if status, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", map[string]string{"Authorization": "Bearer " + tok}); status != http.StatusOK {
		t.Fatalf("got %d %+v, want 200", status, g.Errors)
	}
	stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", nil) // a refusal logs too
	if !s.WaitLog(`"status":401`, 10*time.Second) {
		t.Fatal("Envoy's access log line of the refused request never came")
	}
	lines := 0
	for _, line := range strings.Split(s.Logs(), "\n") {
		var keys []string
		switch {
		case strings.HasPrefix(line, "envoy: {"):
			keys = jsonKeys(t, strings.TrimPrefix(line, "envoy: "))
		case strings.HasPrefix(line, "time="):
			keys = logfmtKeys(line)
		default:
			continue // Envoy's own log lines carry no keys
		}
		lines++
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %s repeated in %s", k, line)
			}
			seen[k] = true
		}
	}
	if lines < 5 {
		t.Fatalf("read %d log lines with keys, want the stack's start and requests:\n%s", lines, s.Logs())
	}
}

// logfmtKeys returns the keys of a slog text line, in order.
func logfmtKeys(line string) []string {
	var keys []string
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		keys = append(keys, line[i:i+eq])
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
			i++
		} else {
			for i < len(line) && line[i] != ' ' {
				i++
			}
		}
	}
	return keys
}

// jsonKeys returns the top-level keys of a JSON object, repeats included.
func jsonKeys(t *testing.T, obj string) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader([]byte(obj)))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", obj)
	}
	var keys []string
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
	}
	return keys
}

// TestStartAndStopLines: `fraise dev` logs a start line with its address
// for each component, and, when stopped, a stop line for each saying what
// it drained.
func TestStartAndStopLines(t *testing.T) {
	t.Parallel()
	s := stack.StartWith(t, stack.Options{Env: map[string]string{"FRAISE_LOG_LEVEL": "info"}})
	for _, c := range []struct{ component, addr string }{
		{"core", s.Addrs.CoreHTTP}, {"core", s.Addrs.CoreFlight}, {"core", s.Addrs.CoreAdmin},
		{"extauthz", s.Addrs.Authz}, {"extauthz", s.Addrs.AuthzAdmin},
		{"ratelimit", s.Addrs.RateLimit}, {"envoy", s.Addrs.Gateway},
	} {
		if want := "msg=listening component=" + c.component; !hasLine(s.Logs(), want, "addr="+c.addr) {
			t.Errorf("no line with %q and addr=%s in\n%s", want, c.addr, s.Logs())
		}
	}
	s.Stop()
	for _, component := range []string{"core", "extauthz", "ratelimit", "envoy"} {
		want := "msg=stopped component=" + component + " drained="
		if !s.WaitLog(want, 30*time.Second) {
			t.Errorf("no line with %q in\n%s", want, s.Logs())
		}
	}
}

// hasLine reports whether a line of logs holds every one of parts.
func hasLine(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
