package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/deploy/demo"
)

// TestWelcomeTokensNameTheirTenantsUsers: every sample token the banner
// prints names a user of the tenant it is for, as the demo seeds them.
func TestWelcomeTokensNameTheirTenantsUsers(t *testing.T) {
	dir := t.TempDir()
	if err := writeDevCredentials(dir, false, nil, Env{Stdout: &bytes.Buffer{}}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printWelcome(Env{Stdout: &out}, "ca.pem", "client.pem", "client-key.pem", devAddrs{Gateway: "127.0.0.1:8443"}, dir, "")
	users := map[string][]string{
		demo.TenantAcme:   {"alice", "bob"},
		demo.TenantGlobex: {"carol", "dave"},
	}
	cmds := regexp.MustCompile(`fraise token --tenant (\S+) --subject (\S+)`).FindAllStringSubmatch(out.String(), -1)
	if len(cmds) == 0 {
		t.Fatalf("no sample token command in the banner:\n%s", out.String())
	}
	for _, m := range cmds {
		tenant, subject := m[1], m[2]
		if !strings.Contains(strings.Join(users[tenant], " "), subject) {
			t.Errorf("the banner pairs tenant %s with %s, who is not one of its users %v", tenant, subject, users[tenant])
		}
	}
}

// TestWelcomeLinksTheSampleRequestsTrace: with a trace URL the sample
// request carries a traceparent and the banner links to that trace; without
// one it carries none.
func TestWelcomeLinksTheSampleRequestsTrace(t *testing.T) {
	dir := t.TempDir()
	if err := writeDevCredentials(dir, false, nil, Env{Stdout: &bytes.Buffer{}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, traceURL string
		want           bool
	}{
		{"with a trace URL", "http://127.0.0.1:16686/trace/{trace_id}", true},
		{"without", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			printWelcome(Env{Stdout: &out}, "ca.pem", "client.pem", "client-key.pem", devAddrs{Gateway: "127.0.0.1:8443"}, dir, tc.traceURL)
			hdr := regexp.MustCompile(`-H 'traceparent: 00-([0-9a-f]{32})-[0-9a-f]{16}-01' \\\n`).FindStringSubmatch(out.String())
			if (hdr != nil) != tc.want {
				t.Fatalf("got traceparent header %v, want one %v:\n%s", hdr, tc.want, out.String())
			}
			if !tc.want {
				return
			}
			if link := "http://127.0.0.1:16686/trace/" + hdr[1] + "\n"; !strings.Contains(out.String(), link) {
				t.Errorf("got no link %q in the banner, want the sample request's trace:\n%s", link, out.String())
			}
		})
	}
}
