// Package xds serves the generated Envoy configuration (listeners, routes,
// clusters and the secrets holding the certificates Envoy presents)
// to Envoy over the aggregated discovery service (ADS), from
// go-control-plane's snapshot cache. Publishing a new set of resources
// gives every connected Envoy a new snapshot version; an invalid set is
// refused and the last good one keeps serving. Envoy keeps each resource
// that arrives unchanged as it is, and updates a changed secret in place.
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/envoy"
)

// DefaultNodeID is the Envoy node id the ingress runs as; the generated
// xDS bootstrap names the same id.
const DefaultNodeID = envoy.DefaultNodeID

// Server is an xDS management server holding one snapshot per node id.
type Server struct {
	cache cachev3.SnapshotCache
	// secrets holds the secrets, answering each request for them by name
	// (cache, in ADS mode, answers a request only when it names every
	// resource of its type: Envoy's clusters ask for their secret before
	// its listener asks for its own, and would wait 15 s for it).
	secrets cachev3.SnapshotCache
	srv     serverv3.Server
	nodeID  string
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	version int
}

// New returns a Server for Envoys with node id nodeID (DefaultNodeID when
// empty). ctx bounds the server's streams.
func New(ctx context.Context, nodeID string, log *slog.Logger) *Server {
	if nodeID == "" {
		nodeID = DefaultNodeID
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	sc := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return cacheFor(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return cacheFor(r.GetTypeUrl()) },
		Caches:        map[string]cachev3.Cache{"ads": c, "secrets": sc},
	}
	m := newMetrics()
	return &Server{cache: c, secrets: sc, srv: serverv3.NewServer(ctx, mux, m.callbacks()), nodeID: nodeID, log: log, metrics: m}
}

// cacheFor names the cache of New's MuxCache that answers for typeURL.
func cacheFor(typeURL string) string {
	if typeURL == resource.SecretType {
		return "secrets"
	}
	return "ads"
}

// Register adds the aggregated and the per-type discovery services to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.srv)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.srv)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.srv)
}

// Publish validates res and, when it is valid and consistent, makes it the
// next snapshot version. It returns the version published.
func (s *Server) Publish(ctx context.Context, res *envoy.Resources) (version string, err error) {
	defer func() { s.metrics.publish(err, time.Now()) }()
	if err := res.Validate(); err != nil {
		return "", fmt.Errorf("xds: refusing invalid resources: %w", err)
	}
	items := map[resource.Type][]types.Resource{}
	for _, l := range res.Listeners {
		items[resource.ListenerType] = append(items[resource.ListenerType], l)
	}
	for _, r := range res.Routes {
		items[resource.RouteType] = append(items[resource.RouteType], r)
	}
	for _, c := range res.Clusters {
		items[resource.ClusterType] = append(items[resource.ClusterType], c)
	}
	secrets := map[resource.Type][]types.Resource{resource.SecretType: nil}
	for _, sec := range res.Secrets {
		secrets[resource.SecretType] = append(secrets[resource.SecretType], sec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	version = strconv.Itoa(s.version + 1)
	snap, err := cachev3.NewSnapshot(version, items)
	if err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return "", fmt.Errorf("xds: inconsistent snapshot: %w", err)
	}
	secSnap, err := cachev3.NewSnapshot(version, secrets)
	if err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	// The secrets first: a cluster or listener of the new version naming
	// a secret finds it served.
	if err := s.secrets.SetSnapshot(ctx, s.nodeID, secSnap); err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	if err := s.cache.SetSnapshot(ctx, s.nodeID, snap); err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	s.version++
	s.log.Info("published xDS snapshot", "node", s.nodeID, "version", version,
		"listeners", len(res.Listeners), "routes", len(res.Routes), "clusters", len(res.Clusters), "secrets", len(res.Secrets))
	return version, nil
}
