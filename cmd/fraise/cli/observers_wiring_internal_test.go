package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// TestNewObserversNamesTheSettingItRefuses: a setting of [observers] the
// wiring cannot turn into the pipeline's adapters is refused at start,
// naming the key, before any connection is opened (no database here).
func TestNewObserversNamesTheSettingItRefuses(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func(*config.Observers)
		want   string
	}{
		{"backpressure policy", func(o *config.Observers) { o.Backpressure = "drop-everything" }, "backpressure policy"},
		{"smtp password from an unset variable", func(o *config.Observers) {
			o.SMTP = config.SMTP{Addr: "127.0.0.1:1", Username: "u", Password: "env://FRAISE_TEST_UNSET_SMTP_PASSWORD"}
		}, "observers.smtp.password"},
		{"smtp ca without a certificate", func(o *config.Observers) {
			o.SMTP = config.SMTP{Addr: "127.0.0.1:1", Username: "u", Password: "p", CA: notPEM}
		}, "observers.smtp.ca"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.change(&cfg.Observers)
			_, err := newObservers(cfg, newSecrets(func(string) string { return "" }, nil), obstest.Logger(t), nil, "w", nil, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
