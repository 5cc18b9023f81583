package cli_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestREADMEPortsTableListsEveryDevPort: the README's ports table lists
// every port `fraise dev` opens by default (with --demo and --xds, and the
// development PostgreSQL and Redis make run starts), and no other.
func TestREADMEPortsTableListsEveryDevPort(t *testing.T) {
	d := config.Default()
	want := map[string]string{}
	for key, addr := range map[string]string{
		"gateway.listen_addr": d.Gateway.ListenAddr, "gateway.admin_addr": d.Gateway.AdminAddr,
		"server.http_addr": d.Server.HTTPAddr, "server.flight_addr": d.Server.FlightAddr, "server.admin_addr": d.Server.AdminAddr,
		"authz.grpc_addr": d.Authz.GRPCAddr, "authz.admin_addr": d.Authz.AdminAddr,
		"ratelimit.grpc_addr": d.RateLimit.GRPCAddr, "ratelimit.http_addr": d.RateLimit.HTTPAddr,
		"ratelimit.debug_addr": d.RateLimit.DebugAddr, "xds.grpc_addr": d.XDS.GRPCAddr,
		"redis.addr": d.Redis.Addr, "database.url": "127.0.0.1:55432",
	} {
		if addr == "" {
			continue // off unless configured
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		want[port] = key
	}
	if !strings.Contains(d.Database.URL, "@127.0.0.1:55432/") {
		t.Fatalf("database.url %s: the test assumes port 55432", d.Database.URL)
	}
	var help bytes.Buffer
	if err := cli.Run(context.Background(), []string{"dev", "--help"}, func(string) string { return "" }, &help, &help); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`-demo-receiver string\s+[^\n]*\n?[^\n]*\(default "127\.0\.0\.1:(\d+)"\)`).FindStringSubmatch(help.String())
	if m == nil {
		t.Fatalf("no --demo-receiver default in\n%s", help.String())
	}
	want[m[1]] = "dev --demo-receiver"

	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Ports")
	if start < 0 {
		t.Fatal("README.md has no ## Ports section")
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end > 0 {
		section = section[:end+3]
	}
	var got []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		got = append(got, regexp.MustCompile(`\d{2,5}`).FindAllString(cell, -1)...)
	}
	for port, key := range want {
		if !slices.Contains(got, port) {
			t.Errorf("README's ports table lacks %s (%s)", port, key)
		}
	}
	for _, port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("README's ports table lists %s, which fraise dev does not open by default", port)
		}
	}
}
