package envoy

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

type validator interface{ ValidateAll() error }

// Validate checks every resource against the validation rules of Envoy's
// own protos (protoc-gen-validate), including every typed config packed in
// an Any, which a plain ValidateAll would not open.
func (r *Resources) Validate() error {
	var errs []error
	for _, m := range r.messages() {
		errs = append(errs, validateDeep(m))
	}
	return errors.Join(errs...)
}

func (r *Resources) messages() []proto.Message {
	var ms []proto.Message
	for _, l := range r.Listeners {
		ms = append(ms, l)
	}
	for _, rc := range r.Routes {
		ms = append(ms, rc)
	}
	for _, c := range r.Clusters {
		ms = append(ms, c)
	}
	for _, s := range r.Secrets {
		ms = append(ms, s)
	}
	return ms
}

// ValidateDeep checks m (a Bootstrap, say) and every typed config packed in
// an Any within it against Envoy's proto validation rules.
func ValidateDeep(m proto.Message) error { return validateDeep(m) }

// validateDeep validates m and every message inside an Any within it.
func validateDeep(m proto.Message) error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err))
		}
	}
	errs = append(errs, eachAny(m.ProtoReflect(), func(inner proto.Message) error { return validateDeep(inner) }))
	return errors.Join(errs...)
}

// eachAny unpacks every Any inside m (at any depth) and calls fn with it.
// An Any whose type is not linked into this binary is an error: it is a
// typed config Envoy may know but Fraise cannot check.
func eachAny(m protoreflect.Message, fn func(proto.Message) error) error {
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		visit := func(msg protoreflect.Message) {
			if a, ok := msg.Interface().(*anypb.Any); ok {
				inner, err := a.UnmarshalNew()
				if err != nil {
					errs = append(errs, fmt.Errorf("typed config %s: %w", a.GetTypeUrl(), err))
					return
				}
				errs = append(errs, fn(inner))
				return
			}
			errs = append(errs, eachAny(msg, fn))
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message())
					return true
				})
			}
		default:
			visit(v.Message())
		}
		return true
	})
	return errors.Join(errs...)
}

// Bootstrap returns a static Envoy bootstrap holding the same resources, the
// route configuration inlined where the listener names it for RDS and each
// secret's certificate where a cluster or the listener names it for SDS.
func (r *Resources) Bootstrap() (*bootstrapv3.Bootstrap, error) {
	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = rc
	}
	secrets := map[string]*tlsv3.Secret{}
	for _, s := range r.Secrets {
		secrets[s.GetName()] = s
	}
	var listeners []*listenerv3.Listener
	for _, l := range r.Listeners {
		l = proto.Clone(l).(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			if err := inlineDownstreamSecrets(fc, secrets); err != nil {
				return nil, fmt.Errorf("envoy: listener %s: %w", l.GetName(), err)
			}
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				var hcm hcmv3.HttpConnectionManager
				if tc == nil || !tc.MessageIs(&hcm) {
					continue
				}
				if err := tc.UnmarshalTo(&hcm); err != nil {
					return nil, err
				}
				if rds := hcm.GetRds(); rds != nil {
					rc, ok := routes[rds.GetRouteConfigName()]
					if !ok {
						return nil, fmt.Errorf("envoy: listener %s names unknown route configuration %q", l.GetName(), rds.GetRouteConfigName())
					}
					hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: proto.Clone(rc).(*routev3.RouteConfiguration)}
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcm)}
			}
		}
		listeners = append(listeners, l)
	}
	clusters := make([]*clusterv3.Cluster, len(r.Clusters))
	for i, c := range r.Clusters {
		c = proto.Clone(c).(*clusterv3.Cluster)
		if err := inlineSecrets(c, secrets); err != nil {
			return nil, err
		}
		clusters[i] = c
	}
	b, err := r.bootstrapBase()
	if err != nil {
		return nil, err
	}
	b.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Listeners: listeners, Clusters: clusters}
	return b, nil
}

// inlineSecrets replaces the SDS secrets c's TLS names with their
// certificates.
func inlineSecrets(c *clusterv3.Cluster, secrets map[string]*tlsv3.Secret) error {
	tc := c.GetTransportSocket().GetTypedConfig()
	var u tlsv3.UpstreamTlsContext
	if tc == nil || !tc.MessageIs(&u) {
		return nil
	}
	if err := tc.UnmarshalTo(&u); err != nil {
		return err
	}
	ctc := u.GetCommonTlsContext()
	if len(ctc.GetTlsCertificateSdsSecretConfigs()) == 0 {
		return nil
	}
	if err := inlineCertificates(ctc, secrets); err != nil {
		return fmt.Errorf("envoy: cluster %s: %w", c.GetName(), err)
	}
	c.TransportSocket = tlsSocket(&u)
	return nil
}

// inlineDownstreamSecrets replaces the SDS secrets fc's TLS names with
// their certificates.
func inlineDownstreamSecrets(fc *listenerv3.FilterChain, secrets map[string]*tlsv3.Secret) error {
	tc := fc.GetTransportSocket().GetTypedConfig()
	var d tlsv3.DownstreamTlsContext
	if tc == nil || !tc.MessageIs(&d) {
		return nil
	}
	if err := tc.UnmarshalTo(&d); err != nil {
		return err
	}
	ctc := d.GetCommonTlsContext()
	if len(ctc.GetTlsCertificateSdsSecretConfigs()) == 0 {
		return nil
	}
	if err := inlineCertificates(ctc, secrets); err != nil {
		return err
	}
	fc.TransportSocket.ConfigType = tlsSocket(&d).ConfigType
	return nil
}

// inlineCertificates puts the certificates of the SDS secrets ctc names in
// ctc itself.
func inlineCertificates(ctc *tlsv3.CommonTlsContext, secrets map[string]*tlsv3.Secret) error {
	for _, sds := range ctc.GetTlsCertificateSdsSecretConfigs() {
		s, ok := secrets[sds.GetName()]
		if !ok || s.GetTlsCertificate() == nil {
			return fmt.Errorf("names unknown certificate secret %q", sds.GetName())
		}
		c := proto.Clone(s.GetTlsCertificate()).(*tlsv3.TlsCertificate)
		// A static certificate is read once: nothing to watch.
		c.WatchedDirectory = nil
		ctc.TlsCertificates = append(ctc.TlsCertificates, c)
	}
	ctc.TlsCertificateSdsSecretConfigs = nil
	return nil
}

// bootstrapBase is what both bootstraps share: the node, the loopback-only
// admin interface and the overload manager's global connection limit.
func (r *Resources) bootstrapBase() (*bootstrapv3.Bootstrap, error) {
	o := r.opts
	o.defaults()
	admin, err := socketAddress(o.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("envoy: AdminAddr: %w", err)
	}
	return &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: o.NodeID, Cluster: "fraise"},
		Admin: &bootstrapv3.Admin{Address: admin},
		// Envoy's global limit on downstream connections, beside the
		// listener's connection_limit filter.
		OverloadManager: &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{{
			Name: "envoy.resource_monitors.global_downstream_max_connections",
			ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: mustAny(&downstreamv3.DownstreamConnectionsConfig{
				MaxActiveDownstreamConnections: int64(o.MaxConnections),
			})},
		}}},
	}, nil
}

// XDSBootstrap returns the bootstrap of an Envoy that takes its listeners,
// routes and clusters from `fraise xds` over ADS: it holds only the node id
// the snapshot is published under and the cluster that reaches the xDS
// server.
func (r *Resources) XDSBootstrap() (*bootstrapv3.Bootstrap, error) {
	o := r.opts
	o.defaults()
	if o.XDSAddr == "" {
		return nil, errors.New("envoy: XDSAddr is required for the xDS bootstrap")
	}
	// Its certificate is inline: it connects before any secret can arrive.
	xc, err := cluster(o, clusterSpec{name: ClusterXDS, addr: o.XDSAddr, h2: true, tls: true, inlineCert: true, health: grpcHealth})
	if err != nil {
		return nil, err
	}
	b, err := r.bootstrapBase()
	if err != nil {
		return nil, err
	}
	b.DynamicResources = &bootstrapv3.Bootstrap_DynamicResources{
		AdsConfig: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			// No timeout: the ADS stream lives as long as Envoy does.
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterXDS},
			}}},
			SetNodeOnFirstMessageOnly: true,
		},
		LdsConfig: ads(),
		CdsConfig: ads(),
	}
	b.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xc}}
	return b, nil
}

// BootstrapYAML renders b as Envoy reads it.
func BootstrapYAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	j, err := protojson.MarshalOptions{Indent: "  "}.Marshal(b)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// ParseBootstrapYAML parses YAML written by BootstrapYAML (or by hand) and
// resolves every typed config, failing on any it cannot.
func ParseBootstrapYAML(data []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		return nil, err
	}
	if err := eachAny(b.ProtoReflect(), func(proto.Message) error { return nil }); err != nil {
		return nil, err
	}
	return &b, nil
}
