package envoy_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fraise-dev/fraise/envoy"
)

// TestChangesTouchOnlyTheirResources builds the resources before and after
// one change of the options and expects every resource the change is not
// about to be the same, byte for byte: Envoy replaces a listener or a
// cluster whose configuration differs, and a replaced cluster resets the
// requests in flight on it (the ext_authz checks among them, which then
// fail closed with 503).
func TestChangesTouchOnlyTheirResources(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*envoy.Options)
		// The resource types the change may touch.
		listeners, routes, clusters bool
	}{
		{name: "nothing", change: func(*envoy.Options) {}},
		{name: "route timeout", change: func(o *envoy.Options) { o.GraphQLTimeout = 12 * time.Second }, routes: true},
		{name: "rotated gateway certificate", change: func(o *envoy.Options) { o.UpstreamCert, o.UpstreamKey = "c2.pem", "c2-key.pem" }},
		{name: "rate-limit timeout", change: func(o *envoy.Options) { o.RateLimitTimeout = 150 * time.Millisecond }, listeners: true},
		{name: "core address", change: func(o *envoy.Options) { o.CoreHTTPAddr = "127.0.0.1:9090" }, clusters: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			before := mustBuild(t, o)
			tt.change(&o)
			after := mustBuild(t, o)
			for _, k := range []struct {
				kind       string
				may        bool
				before, at []proto.Message
			}{
				{"listener", tt.listeners, messages(before.Listeners), messages(after.Listeners)},
				{"route configuration", tt.routes, messages(before.Routes), messages(after.Routes)},
				{"cluster", tt.clusters, messages(before.Clusters), messages(after.Clusters)},
			} {
				if k.may {
					continue
				}
				if len(k.before) != len(k.at) {
					t.Fatalf("got %d %ss after the change, want %d", len(k.at), k.kind, len(k.before))
				}
				for i := range k.before {
					if !proto.Equal(k.before[i], k.at[i]) {
						t.Errorf("%s %d differs after the change, want it byte-identical", k.kind, i)
					}
				}
			}
		})
	}
}

func messages[M proto.Message](ms []M) []proto.Message {
	out := make([]proto.Message, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}
