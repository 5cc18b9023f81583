package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// mustKustomizeFS copies deploy/k8s into an in-memory filesystem at /k8s,
// with a placeholder for every secret source when withSecrets.
func mustKustomizeFS(tb testing.TB, m *manifests, withSecrets bool) filesys.FileSystem {
	tb.Helper()
	fsys := filesys.MakeFsInMemory()
	err := filepath.WalkDir(k8sDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(k8sDir, p)
		return fsys.WriteFile(path.Join("/k8s", filepath.ToSlash(rel)), data)
	})
	if err != nil {
		tb.Fatal(err)
	}
	if withSecrets {
		for _, keys := range m.secrets {
			for key, file := range keys {
				if err := fsys.WriteFile(path.Join("/k8s", file), []byte("placeholder for "+key)); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	return fsys
}

// built is one object of kustomize's output.
type built struct {
	meta metav1.PartialObjectMetadata
	doc  []byte
}

func mustKustomize(tb testing.TB, fsys filesys.FileSystem) []built {
	tb.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, "/k8s")
	if err != nil {
		tb.Fatalf("kustomize build: %v", err)
	}
	out, err := res.AsYaml()
	if err != nil {
		tb.Fatal(err)
	}
	var objs []built
	for _, doc := range docSeparator.Split(string(out), -1) {
		if !hasContent([]byte(doc)) {
			continue
		}
		var b built
		if err := yaml.Unmarshal([]byte(doc), &b.meta); err != nil {
			tb.Fatal(err)
		}
		b.doc = []byte(doc)
		objs = append(objs, b)
	}
	return objs
}

// TestK8sKustomizeBuild runs kustomize itself (the library kubectl -k
// embeds) over deploy/k8s: generators, name references, images and labels
// must come out as the Deployments expect.
func TestK8sKustomizeBuild(t *testing.T) {
	m := mustLoadManifests(t)
	objs := mustKustomize(t, mustKustomizeFS(t, m, true))
	names := map[string][]string{} // kind → names
	for _, o := range objs {
		names[o.meta.Kind] = append(names[o.meta.Kind], o.meta.Name)
		if o.meta.Labels["app.kubernetes.io/part-of"] != "fraise" {
			t.Errorf("%s %s: missing app.kubernetes.io/part-of: fraise", o.meta.Kind, o.meta.Name)
		}
		switch o.meta.Kind {
		case "ConfigMap", "Secret":
			// Generated: the hash suffix rolls pods when the content changes.
			if !strings.Contains(o.meta.Name, "-") || o.meta.Labels["app.kubernetes.io/component"] != "shared" {
				t.Errorf("%s %s: want a hashed name and component shared", o.meta.Kind, o.meta.Name)
			}
		default:
			// The output is still valid, strictly decoded API objects.
			if _, err := decodeDocument(o.doc); err != nil {
				t.Errorf("%s %s after kustomize: %v", o.meta.Kind, o.meta.Name, err)
			}
		}
	}
	if len(names["Secret"]) != len(m.secrets) || len(names["ConfigMap"]) != len(m.configMaps) {
		t.Errorf("built %d Secrets and %d ConfigMaps, want %d and %d", len(names["Secret"]), len(names["ConfigMap"]), len(m.secrets), len(m.configMaps))
	}
	var migrateNeeds []string
	for _, o := range objs {
		var spec corev1.PodTemplateSpec
		switch o.meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.Unmarshal(o.doc, &d); err != nil {
				t.Fatal(err)
			}
			spec = d.Spec.Template
		case "Job":
			var j batchv1.Job
			if err := yaml.Unmarshal(o.doc, &j); err != nil {
				t.Fatal(err)
			}
			spec = j.Spec.Template
			migrateNeeds = append(migrateNeeds, "ServiceAccount/"+spec.Spec.ServiceAccountName)
		default:
			continue
		}
		for _, v := range spec.Spec.Volumes {
			var kind, name string
			switch {
			case v.ConfigMap != nil:
				kind, name = "ConfigMap", v.ConfigMap.Name
			case v.Secret != nil:
				kind, name = "Secret", v.Secret.SecretName
			default:
				continue
			}
			if !slices.Contains(names[kind], name) {
				t.Errorf("%s %s volume %s: %s %q is not in the build (name reference not rewritten)", o.meta.Kind, o.meta.Name, v.Name, kind, name)
			}
			if o.meta.Kind == "Job" {
				migrateNeeds = append(migrateNeeds, kind+"/"+name)
			}
		}
		for _, c := range spec.Spec.Containers {
			if c.Image == "fraise" {
				t.Errorf("%s %s/%s: the images transformer did not name the image", o.meta.Kind, o.meta.Name, c.Name)
			}
		}
	}
	// The upgrade's first step, kubectl apply -l 'component in
	// (shared,migrate)', must carry everything the Job needs.
	selected := map[string]bool{}
	for _, o := range objs {
		if c := o.meta.Labels["app.kubernetes.io/component"]; c == "shared" || c == "migrate" {
			selected[o.meta.Kind+"/"+o.meta.Name] = true
		}
	}
	if len(migrateNeeds) == 0 {
		t.Fatal("no Job in the build")
	}
	for _, need := range migrateNeeds {
		if !selected[need] {
			t.Errorf("the migration step does not apply %s, which the Job needs", need)
		}
	}
}

func TestK8sKustomizeBuildNeedsSecrets(t *testing.T) {
	m := mustLoadManifests(t)
	_, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mustKustomizeFS(t, m, false), "/k8s")
	if err == nil || !strings.Contains(err.Error(), "secrets/") {
		t.Fatalf("kustomize build without the secret files = %v, want an error naming them", err)
	}
}
