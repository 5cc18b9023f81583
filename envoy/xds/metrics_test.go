package xds_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	client "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fraise-dev/fraise/envoy/xds"
)

// TestMetrics publishes a good and a refused snapshot, connects an ADS
// client that NACKs the response it gets and waits for the next, and reads
// the counts.
func TestMetrics(t *testing.T) {
	s, conn := mustServer(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collectors()...)
	ctx := context.Background()
	if _, err := s.Publish(ctx, mustResources(t, "10.0.0.1:8080")); err != nil {
		t.Fatal(err)
	}
	bad := mustResources(t, "10.0.0.2:8080")
	bad.Clusters[0].Name = ""
	if _, err := s.Publish(ctx, bad); err == nil {
		t.Fatal("got the invalid snapshot published, want it refused")
	}
	c := client.NewADSClient(ctx, &corev3.Node{Id: xds.DefaultNodeID}, resource.ClusterType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(); err != nil {
		t.Fatal(err)
	}
	if err := c.Nack("refused in a test"); err != nil {
		t.Fatal(err)
	}
	// The server counts a request before it watches for the next
	// snapshot: once the next one arrives, the NACK has been counted.
	if _, err := s.Publish(ctx, mustResources(t, "10.0.0.3:8080")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, family, label string
		want                float64
	}{
		{"published", "fraise_xds_snapshots_total", "published", 2},
		{"refused", "fraise_xds_snapshots_total", "refused", 1},
		{"streams", "fraise_xds_streams_open", "", 1},
		{"requests", "fraise_xds_requests_total", "cluster", 2},
		{"nacks", "fraise_xds_nacks_total", "cluster", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := value(mfs, tt.family, tt.label); got != tt.want {
				t.Errorf("%s{%s}: got %v, want %v", tt.family, tt.label, got, tt.want)
			}
		})
	}
	if got := value(mfs, "fraise_xds_snapshot_published_timestamp_seconds", ""); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("fraise_xds_snapshot_published_timestamp_seconds: got %v, want the publication time", got)
	}
}

// value sums the series of family whose one label, if any, is label.
func value(mfs []*dto.MetricFamily, family, label string) float64 {
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}
