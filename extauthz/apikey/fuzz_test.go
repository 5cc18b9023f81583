package apikey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/extauthz/apikey"
)

// FuzzParse feeds untrusted bearer values through Parse: it must refuse
// with ErrInvalid or return an id and secret that rebuild the input.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("frs_0123456789abcdef_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst")
	f.Add("frs__")
	f.Fuzz(func(t *testing.T, raw string) {
		id, secret, err := apikey.Parse(raw)
		if err != nil {
			if !errors.Is(err, apikey.ErrInvalid) {
				t.Fatalf("got error %v, want one wrapping ErrInvalid", err)
			}
			if strings.Contains(err.Error(), raw) && raw != "" && len(raw) > 8 {
				t.Fatalf("error %q echoes the input", err)
			}
			return
		}
		if apikey.Prefix+id+"_"+secret != raw || len(id) != 16 {
			t.Fatalf("got id %q secret %q from %q", id, secret, raw)
		}
	})
}
