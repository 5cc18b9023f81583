package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

func TestLogLinesNameEachKeyOnce(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(config.Log{Format: format, Level: "info"}, &b)
			log.With("component", "core").With("component", "observers", "tenant", "t1").
				Info("listening", "component", "observer-dispatcher", "addr", "127.0.0.1:1")
			line := b.String()
			for _, key := range []string{"component", "tenant", "addr"} {
				if n := strings.Count(line, key+"=") + strings.Count(line, `"`+key+`":`); n != 1 {
					t.Errorf("%s: key %s appears %d times, want once: %s", format, key, n, line)
				}
			}
			if !strings.Contains(line, "observer-dispatcher") || strings.Contains(line, "=core") || strings.Contains(line, `"core"`) {
				t.Errorf("%s: want the innermost component only: %s", format, line)
			}
		})
	}
}
