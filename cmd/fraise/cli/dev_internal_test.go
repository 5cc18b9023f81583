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
	printWelcome(Env{Stdout: &out}, welcome{CA: "ca.pem", Cert: "client.pem", Key: "client-key.pem", Addrs: devAddrs{Gateway: "127.0.0.1:8443"}, Dir: dir})
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
