package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// MaxBundleBytes bounds an OPA bundle, compressed and uncompressed.
const MaxBundleBytes = 32 << 20

// ReadBundle reads an OPA bundle (a gzipped tarball with .rego modules,
// their tests and data.json documents) and returns it as a policy folder
// that Load reads: modules at their paths, and each top-level data
// document at data/<name>.json. It also returns the manifest's revision.
// Signed bundles are not supported; serve bundles over an authenticated
// channel instead.
func ReadBundle(r io.Reader) (fs.FS, string, error) {
	lr := &io.LimitedReader{R: r, N: MaxBundleBytes + 1}
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(lr, "")).
		WithSkipBundleVerification(true).
		WithSizeLimitBytes(MaxBundleBytes).
		WithRegoVersion(ast.RegoV1).
		Read()
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle: %w", err)
	}
	if lr.N <= 0 {
		return nil, "", fmt.Errorf("policy bundle: larger than %d bytes", MaxBundleBytes)
	}
	out := fstest.MapFS{}
	for _, m := range b.Modules {
		p := strings.TrimPrefix(path.Clean("/"+m.Path), "/")
		if strings.HasPrefix(p, DataDir+"/") {
			return nil, "", fmt.Errorf("policy bundle: module %s may not live under %s/", m.Path, DataDir)
		}
		out[p] = &fstest.MapFile{Data: m.Raw, Mode: 0o444}
	}
	for k, v := range b.Data {
		if k == "system" {
			continue // OPA's own manifest data
		}
		if k == "" || strings.ContainsAny(k, `/\.`) {
			return nil, "", fmt.Errorf("policy bundle: data key %q cannot be a file name", k)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, "", fmt.Errorf("policy bundle: data.%s: %w", k, err)
		}
		out[DataDir+"/"+k+".json"] = &fstest.MapFile{Data: j, Mode: 0o444}
	}
	return out, b.Manifest.Revision, nil
}
