package envoy_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/envoy"
)

func opts() envoy.Options {
	return envoy.Options{
		ListenAddr: "127.0.0.1:8443", CoreHTTPAddr: "127.0.0.1:8080", CoreFlightAddr: "127.0.0.1:8815",
		AuthzAddr: "127.0.0.1:9191", RateLimitAddr: "127.0.0.1:8081",
		CACert: "ca.pem", ServerCert: "s.pem", ServerKey: "s-key.pem",
		UpstreamCA: "ca.pem", UpstreamCert: "c.pem", UpstreamKey: "c-key.pem",
	}
}

func TestBuildValidates(t *testing.T) {
	res, err := envoy.Build(opts())
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Validate(); err != nil {
		t.Fatalf("generated resources fail validation: %v", err)
	}
	b, err := res.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := envoy.ParseBootstrapYAML(y)
	if err != nil {
		t.Fatalf("bootstrap does not parse back: %v", err)
	}
	if err := back.ValidateAll(); err != nil {
		t.Fatalf("parsed bootstrap invalid: %v", err)
	}
	if !strings.Contains(string(y), "envoy.filters.http.ext_authz") {
		t.Fatal("bootstrap has no ext_authz filter")
	}
}

func TestBrokenOptionsAreCaught(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*envoy.Options)
	}{
		{"no listen address", func(o *envoy.Options) { o.ListenAddr = "" }},
		{"bad port", func(o *envoy.Options) { o.CoreHTTPAddr = "127.0.0.1:99999" }},
		{"no CA", func(o *envoy.Options) { o.CACert = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			tt.mod(&o)
			if _, err := envoy.Build(o); err == nil {
				t.Fatal("got no error")
			}
		})
	}
}
