package extauthz_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/internal/await"
)

func mustWriteDir(tb testing.TB, dir string, files fstest.MapFS) {
	tb.Helper()
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		// Write then rename, as an editor or a deploy does.
		if err := os.WriteFile(p+".tmp", f.Data, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			tb.Fatal(err)
		}
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	await.Until(tb, 10*time.Second, what, cond)
}

func viewerMutation(tb testing.TB, f *fixture) *authv3.CheckRequest {
	return graphqlRequest("Bearer "+f.token(tb, "viewer"), "mutation { createUser { id } }")
}

const viewerMayMutateTest = "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_viewer_may_mutate if authz.decision.allow with input as {\"principal\": {\"subject\": \"a\", \"tenant\": \"t\", \"roles\": [\"viewer\"]}, \"graphql\": {\"operation\": \"mutation\", \"name\": \"\", \"root_fields\": [\"createUser\"]}}\n"

// TestWatchPolicyDir edits a policy directory under a running extauthz: a
// change whose own tests fail is not loaded and the previous policy keeps
// deciding; a change that passes is loaded atomically.
func TestWatchPolicyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustWriteDir(t, dir, rbacWith(t, nil))
	var mu sync.Mutex
	var reloads []string // "loaded <rev>" or "rejected <rev>", as metrics see them
	f := mustFixture(t, func(o *extauthz.Options) {
		o.PolicyFS = os.DirFS(dir)
		o.ObserveReload = func(rev string, err error) {
			mu.Lock()
			defer mu.Unlock()
			reloads = append(reloads, map[bool]string{true: "loaded ", false: "rejected "}[err == nil]+rev)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.srv.WatchPolicyDir(ctx, dir, 10*time.Millisecond) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	before := f.srv.PolicyRevision()

	// Viewers may mutate, says the data; the policy's own tests disagree.
	mustWriteDir(t, dir, fstest.MapFS{"data/roles.json": {Data: []byte(viewersMayMutate)}})
	waitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(f.logs.String(), "policy not loaded") })
	if !strings.Contains(f.logs.String(), "test_viewer_may_not_mutate") {
		t.Errorf("got log %s, want the failing test named", f.logs.String())
	}
	if got := f.srv.PolicyRevision(); got != before {
		t.Fatalf("got revision %s, want the previous %s", got, before)
	}
	if d := mustDenial(t, mustCheck(t, f.client, viewerMutation(t, f))); d.status != 403 {
		t.Fatalf("got %d, want the previous policy's 403", d.status)
	}

	// The team updates the test too: now the change loads.
	mustWriteDir(t, dir, fstest.MapFS{"authz_test.rego": {Data: []byte(viewerMayMutateTest)}})
	waitFor(t, "the new policy", func() bool { return f.srv.PolicyRevision() != before })
	if resp := mustCheck(t, f.client, viewerMutation(t, f)); resp.GetOkResponse() == nil {
		t.Fatalf("got %v, want the new policy to allow", resp)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reloads) != 3 || reloads[0] != "loaded "+before || !strings.HasPrefix(reloads[1], "rejected ") ||
		reloads[1] == "rejected "+before || reloads[2] != "loaded "+f.srv.PolicyRevision() {
		t.Errorf("reloads observed: %q, want the first load, one rejection of a new revision, then the new revision loaded", reloads)
	}
}

// bundleServer serves an OPA bundle tarball with an ETag, as a bundle
// server (nginx, S3, OPA's own) does.
type bundleServer struct {
	srv         *httptest.Server
	mu          sync.Mutex
	tarball     []byte
	etag        string
	notModified atomic.Int64
}

func mustBundleServer(tb testing.TB) *bundleServer {
	tb.Helper()
	b := &bundleServer{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		body, etag := b.tarball, b.etag
		b.mu.Unlock()
		if r.URL.Path != "/bundles/fraise.tar.gz" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			b.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(b.srv.Close)
	return b
}

// set builds a bundle from a policy folder: modules at their paths, and
// data/x.json as the bundle document x/data.json.
func (b *bundleServer) set(tb testing.TB, revision string, files fstest.MapFS) {
	tb.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			tb.Fatal(err)
		}
	}
	add(".manifest", fmt.Appendf(nil, `{"revision": %q, "roots": [""]}`, revision))
	for name, f := range files {
		if doc, ok := strings.CutPrefix(name, "data/"); ok {
			add(strings.TrimSuffix(doc, ".json")+"/data.json", f.Data)
		} else {
			add(name, f.Data)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		tb.Fatal(err)
	}
	b.mu.Lock()
	b.tarball, b.etag = buf.Bytes(), `"`+revision+`"`
	b.mu.Unlock()
}

func TestPollBundle(t *testing.T) {
	t.Parallel()
	bs := mustBundleServer(t)
	f := mustFixture(t)
	embedded := f.srv.PolicyRevision()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// Revision 1: the RBAC policy plus a data document, so its revision
	// differs from the embedded one.
	bs.set(t, "r1", rbacWith(t, map[string]string{"data/extra.json": `{"note": "from the bundle"}`}))
	first := make(chan error, 1)
	wg.Go(func() {
		f.srv.PollBundle(ctx, bs.srv.Client(), bs.srv.URL+"/bundles/fraise.tar.gz", 20*time.Millisecond, first)
	})
	if err := <-first; err != nil {
		t.Fatalf("first bundle: got %v, want loaded", err)
	}
	r1 := f.srv.PolicyRevision()
	if r1 == embedded {
		t.Fatal("got the embedded revision, want the bundle's")
	}
	waitFor(t, "an unchanged bundle answered with 304", func() bool { return bs.notModified.Load() > 0 })
	if d := mustDenial(t, mustCheck(t, f.client, viewerMutation(t, f))); d.status != 403 {
		t.Fatalf("got %d, want 403 from the bundle's RBAC", d.status)
	}

	// Revision 2 fails its own tests: not loaded, r1 keeps deciding.
	bs.set(t, "r2", rbacWith(t, map[string]string{"data/roles.json": viewersMayMutate}))
	waitFor(t, "the failed bundle to be logged", func() bool { return strings.Contains(f.logs.String(), `bundle revision \"r2\"`) })
	if got := f.srv.PolicyRevision(); got != r1 {
		t.Fatalf("got revision %s, want r1's %s", got, r1)
	}
	if d := mustDenial(t, mustCheck(t, f.client, viewerMutation(t, f))); d.status != 403 {
		t.Fatalf("got %d, want r1's 403", d.status)
	}

	// Revision 3 changes data and tests together: loaded.
	bs.set(t, "r3", rbacWith(t, map[string]string{"data/roles.json": viewersMayMutate, "authz_test.rego": viewerMayMutateTest}))
	waitFor(t, "revision r3", func() bool { return f.srv.PolicyRevision() != r1 })
	if resp := mustCheck(t, f.client, viewerMutation(t, f)); resp.GetOkResponse() == nil {
		t.Fatalf("got %v, want r3 to allow", resp)
	}
}
