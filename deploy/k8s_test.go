package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

const k8sDir = "k8s"

// kustomization is the part of kustomization.yaml deploy/k8s uses; decoded
// strictly, so a misspelt key fails here rather than in kustomize.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	GeneratorOptions struct {
		Labels map[string]string `json:"labels"`
	} `json:"generatorOptions"`
	ConfigMapGenerator []generator `json:"configMapGenerator"`
	SecretGenerator    []generator `json:"secretGenerator"`
}

type generator struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Files []string `json:"files"`
}

// keys maps each key of the generated object to its source file, as
// kustomize names them: "key=file", or the file's base name.
func (g generator) keys() map[string]string {
	m := make(map[string]string, len(g.Files))
	for _, f := range g.Files {
		if k, file, ok := strings.Cut(f, "="); ok {
			m[k] = file
		} else {
			m[path.Base(f)] = f
		}
	}
	return m
}

// workload is a pod template with where it came from.
type workload struct {
	kind, name string
	replicas   int32
	pod        corev1.PodTemplateSpec
}

// manifests is every object deploy/k8s declares, by kind.
type manifests struct {
	kustomization kustomization
	deployments   map[string]*appsv1.Deployment
	jobs          map[string]*batchv1.Job
	services      map[string]*corev1.Service
	accounts      map[string]*corev1.ServiceAccount
	pdbs          []*policyv1.PodDisruptionBudget
	hpas          []*autoscalingv2.HorizontalPodAutoscaler
	policies      []*networkingv1.NetworkPolicy
	configMaps    map[string]map[string]string // name → key → file
	secrets       map[string]map[string]string
}

func (m *manifests) workloads() []workload {
	var ws []workload
	for _, name := range sortedKeys(m.deployments) {
		d := m.deployments[name]
		ws = append(ws, workload{kind: "Deployment", name: name, replicas: ptrOr(d.Spec.Replicas, 1), pod: d.Spec.Template})
	}
	for _, name := range sortedKeys(m.jobs) {
		ws = append(ws, workload{kind: "Job", name: name, replicas: 1, pod: m.jobs[name].Spec.Template})
	}
	return ws
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeDocument decodes one YAML document strictly into the API type of
// its kind: unknown fields, a wrong apiVersion or an unexpected kind are
// errors. It returns nil for a document of comments only.
func decodeDocument(doc []byte) (any, error) {
	if !hasContent(doc) {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	want := map[string]struct {
		apiVersion string
		obj        func() any
	}{
		"Deployment":              {"apps/v1", func() any { return new(appsv1.Deployment) }},
		"Job":                     {"batch/v1", func() any { return new(batchv1.Job) }},
		"Service":                 {"v1", func() any { return new(corev1.Service) }},
		"ServiceAccount":          {"v1", func() any { return new(corev1.ServiceAccount) }},
		"PodDisruptionBudget":     {"policy/v1", func() any { return new(policyv1.PodDisruptionBudget) }},
		"HorizontalPodAutoscaler": {"autoscaling/v2", func() any { return new(autoscalingv2.HorizontalPodAutoscaler) }},
		"NetworkPolicy":           {"networking.k8s.io/v1", func() any { return new(networkingv1.NetworkPolicy) }},
	}
	w, ok := want[tm.Kind]
	if !ok {
		// Secrets in particular: they come from secretGenerator only.
		return nil, fmt.Errorf("kind %q is not one deploy/k8s declares", tm.Kind)
	}
	if tm.APIVersion != w.apiVersion {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, w.apiVersion)
	}
	obj := w.obj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

func mustLoadManifests(tb testing.TB) *manifests {
	tb.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, jobs: map[string]*batchv1.Job{},
		services: map[string]*corev1.Service{}, accounts: map[string]*corev1.ServiceAccount{},
		configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{},
	}
	data, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &m.kustomization); err != nil {
		tb.Fatalf("kustomization.yaml: %v", err)
	}
	for _, g := range m.kustomization.ConfigMapGenerator {
		m.configMaps[g.Name] = g.keys()
	}
	for _, g := range m.kustomization.SecretGenerator {
		m.secrets[g.Name] = g.keys()
	}
	for _, res := range m.kustomization.Resources {
		data, err := os.ReadFile(filepath.Join(k8sDir, res))
		if err != nil {
			tb.Fatalf("resource %s: %v", res, err)
		}
		for i, doc := range docSeparator.Split(string(data), -1) {
			obj, err := decodeDocument([]byte(doc))
			if err != nil {
				tb.Fatalf("%s document %d: %v", res, i+1, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *batchv1.Job:
				m.jobs[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.ServiceAccount:
				m.accounts[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *networkingv1.NetworkPolicy:
				m.policies = append(m.policies, o)
			}
		}
	}
	return m
}

func TestDecodeDocumentRejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n", "unknown field"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i, probe: {}}]\n", "unknown field"},
		{"wrong apiVersion", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n", "apiVersion"},
		{"literal secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: hunter2}\n", "not one deploy/k8s declares"},
		{"duplicate key", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n", "already set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeDocument([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeDocument = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestK8sKustomizationResources(t *testing.T) {
	m := mustLoadManifests(t)
	k := m.kustomization
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion/kind %q/%q", k.APIVersion, k.Kind)
	}
	// Every YAML file in the directory is either a resource or a
	// generator's source: none is forgotten.
	used := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		used[r] = true
	}
	for _, g := range append(slices.Clone(k.ConfigMapGenerator), k.SecretGenerator...) {
		for _, f := range g.keys() {
			used[f] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s is in neither resources nor a generator", f)
		}
	}
	for name, keys := range m.configMaps {
		for key, file := range keys {
			if _, err := os.Stat(filepath.Join(k8sDir, file)); err != nil {
				t.Errorf("configMap %s key %s: %v", name, key, err)
			}
		}
	}
	// Secret sources are never committed: secrets/ ignores everything.
	ignore, err := os.ReadFile(filepath.Join(k8sDir, "secrets", ".gitignore"))
	if err != nil || !strings.Contains(string(ignore), "\n*\n") {
		t.Errorf("secrets/.gitignore must ignore every file: %v", err)
	}
	for name, keys := range m.secrets {
		for key, file := range keys {
			if !strings.HasPrefix(file, "secrets/") {
				t.Errorf("secret %s key %s comes from %s, outside the ignored secrets/", name, key, file)
			}
		}
	}
	for _, want := range []string{"core", "authz", "ratelimit", "xds", "envoy"} {
		if m.deployments[want] == nil || m.services[want] == nil {
			t.Errorf("missing Deployment or Service %q", want)
		}
	}
	if m.jobs["migrate"] == nil {
		t.Fatal("missing the migrate Job")
	}
	// The upgrade's first step applies what the Job needs by label: the
	// generated objects, the service account and the Job itself.
	if k.GeneratorOptions.Labels["app.kubernetes.io/component"] != "shared" {
		t.Error("generated objects must carry app.kubernetes.io/component: shared")
	}
	sa := m.jobs["migrate"].Spec.Template.Spec.ServiceAccountName
	if a := m.accounts[sa]; a == nil || a.Labels["app.kubernetes.io/component"] != "shared" {
		t.Errorf("the Job's service account %q must carry app.kubernetes.io/component: shared", sa)
	}
	if m.jobs["migrate"].Labels["app.kubernetes.io/component"] != "migrate" {
		t.Error("the Job must carry app.kubernetes.io/component: migrate")
	}
}

func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestK8sServicesSelectPods(t *testing.T) {
	m := mustLoadManifests(t)
	for _, name := range sortedKeys(m.services) {
		svc := m.services[name]
		var matched []workload
		for _, w := range m.workloads() {
			if selects(svc.Spec.Selector, w.pod.Labels) {
				matched = append(matched, w)
			}
		}
		if len(matched) != 1 || matched[0].kind != "Deployment" {
			t.Errorf("Service %s selects %d workloads, want exactly one Deployment", name, len(matched))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := findPort(matched[0].pod.Spec.Containers, p.TargetPort); !ok {
				t.Errorf("Service %s port %s: targetPort %s is no container port of %s", name, p.Name, p.TargetPort.String(), matched[0].name)
			}
		}
	}
	for _, d := range m.deployments {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: selector does not match its own pod labels", d.Name)
		}
	}
}

// findPort finds a container port by name or number.
func findPort(cs []corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// containerCommand is what a container runs: the fraise subcommand, or
// "envoy" for the official Envoy image.
func containerCommand(c corev1.Container) string {
	if strings.HasPrefix(c.Image, "envoyproxy/envoy:") {
		return "envoy"
	}
	return subcommand(c)
}

// TestK8sProbes: probe ports exist; no probe speaks HTTP or gRPC to a port
// that is TLS only (the kubelet presents no client certificate, so such a
// probe fails on a healthy pod); readiness is the admin port's /readyz
// where the process has one, a TCP connection otherwise.
func TestK8sProbes(t *testing.T) {
	m := mustLoadManifests(t)
	file := filepath.Join(k8sDir, "fraise.toml")
	for _, name := range sortedKeys(m.deployments) {
		d := m.deployments[name]
		for _, c := range d.Spec.Template.Spec.Containers {
			where := name + "/" + c.Name
			cmd := containerCommand(c)
			cfg := mustLoadConfig(t, file, containerEnv(c))
			checkRequired(t, where, cmd, cfg, config.ProfileProduction)
			tlsPorts := map[int32]string{}
			for key := range tlsListens(cmd, cfg) {
				if addr := listens(cmd, cfg)[key]; addr != "" {
					_, p := portOf(t, key, addr)
					tlsPorts[p] = key
				}
			}
			var admin int32
			if key := adminKey(cmd); key != "" && listens(cmd, cfg)[key] != "" {
				_, admin = portOf(t, key, listens(cmd, cfg)[key])
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: needs liveness and readiness probes", where)
			}
			for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil {
					continue
				}
				var port intstr.IntOrString
				switch {
				case p.HTTPGet != nil:
					port = p.HTTPGet.Port
					want := map[string]string{"liveness": "/healthz", "startup": "/healthz", "readiness": "/readyz"}[kind]
					if p.HTTPGet.Path != want {
						t.Errorf("%s %s probe: path %s, want %s", where, kind, p.HTTPGet.Path, want)
					}
				case p.GRPC != nil:
					port = intstr.FromInt32(p.GRPC.Port)
				case p.TCPSocket != nil:
					port = p.TCPSocket.Port
				default:
					t.Errorf("%s %s probe: no httpGet, grpc or tcpSocket", where, kind)
					continue
				}
				n, ok := findPort([]corev1.Container{c}, port)
				if !ok {
					t.Errorf("%s %s probe: port %s is no container port", where, kind, port.String())
					continue
				}
				if key, isTLS := tlsPorts[n]; isTLS && p.TCPSocket == nil {
					t.Errorf("%s %s probe: port %d (%s) is TLS only and the kubelet presents no client certificate: probe /readyz on the admin port, or TCP", where, kind, n, key)
				}
				if kind != "readiness" {
					continue
				}
				switch {
				case admin != 0 && (p.HTTPGet == nil || n != admin):
					t.Errorf("%s readiness probe: want /readyz on the admin port %d", where, admin)
				case admin == 0 && p.TCPSocket == nil:
					t.Errorf("%s readiness probe: the process has no HTTP admin port: want a TCP probe", where)
				}
			}
		}
	}
}

func TestK8sContainersHardened(t *testing.T) {
	m := mustLoadManifests(t)
	for _, w := range m.workloads() {
		ps := w.pod.Spec
		where := w.kind + " " + w.name
		if ps.ServiceAccountName == "" || m.accounts[ps.ServiceAccountName] == nil {
			t.Errorf("%s: serviceAccountName %q is not declared", where, ps.ServiceAccountName)
		}
		if ptrOr(ps.AutomountServiceAccountToken, true) {
			t.Errorf("%s: mounts a service account token no process uses", where)
		}
		psc := ps.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if len(ps.InitContainers) > 0 {
			t.Errorf("%s: init containers are not expected", where)
		}
		for _, c := range ps.Containers {
			where := where + "/" + c.Name
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[r]
				lim, okLim := c.Resources.Limits[r]
				if !okReq || !okLim {
					t.Errorf("%s: needs %s request and limit", where, r)
				} else if req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s above limit %s", where, r, req.String(), lim.String())
				}
			}
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if !ptrOr(sc.RunAsNonRoot, ptrOr(psc.RunAsNonRoot, false)) {
				t.Errorf("%s: must run as non-root", where)
			}
			if uid := ptrOr(sc.RunAsUser, ptrOr(psc.RunAsUser, 0)); uid == 0 {
				t.Errorf("%s: runAsUser must name a non-zero uid (images may not declare one kubelet can check)", where)
			}
			if !ptrOr(sc.ReadOnlyRootFilesystem, false) {
				t.Errorf("%s: root filesystem must be read-only", where)
			}
			if ptrOr(sc.AllowPrivilegeEscalation, true) {
				t.Errorf("%s: allowPrivilegeEscalation must be false", where)
			}
			if ptrOr(sc.Privileged, false) {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: must drop ALL capabilities and add none", where)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
			}
			if c.Image == "fraise" {
				// GOMEMLIMIT follows the container's own memory limit.
				var ok bool
				for _, e := range c.Env {
					if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
						ref := e.ValueFrom.ResourceFieldRef
						ok = ref.Resource == "limits.memory" && ref.ContainerName == c.Name
					}
				}
				if !ok {
					t.Errorf("%s: GOMEMLIMIT must come from its own limits.memory (resourceFieldRef)", where)
				}
			} else if !strings.Contains(c.Image, ":") {
				t.Errorf("%s: third-party image %q needs a tag", where, c.Image)
			}
		}
	}
}

func TestK8sVolumesReferenceGenerated(t *testing.T) {
	m := mustLoadManifests(t)
	for _, w := range m.workloads() {
		vols := map[string]corev1.Volume{}
		for _, v := range w.pod.Spec.Volumes {
			vols[v.Name] = v
			var keys map[string]string
			var items []corev1.KeyToPath
			switch {
			case v.ConfigMap != nil:
				keys, items = m.configMaps[v.ConfigMap.Name], v.ConfigMap.Items
				if keys == nil {
					t.Errorf("%s %s volume %s: ConfigMap %q is not generated by the kustomization", w.kind, w.name, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil:
				keys, items = m.secrets[v.Secret.SecretName], v.Secret.Items
				if keys == nil {
					t.Errorf("%s %s volume %s: Secret %q is not generated by the kustomization", w.kind, w.name, v.Name, v.Secret.SecretName)
				}
				// Keys and credentials: the pod's group (fsGroup) reads
				// them, nobody else (the default, 0644, is world-readable).
				var fsGroup int64
				if sc := w.pod.Spec.SecurityContext; sc != nil {
					fsGroup = ptrOr(sc.FSGroup, 0)
				}
				if mode := ptrOr(v.Secret.DefaultMode, 0o644); mode&0o007 != 0 || fsGroup == 0 {
					t.Errorf("%s %s volume %s: defaultMode %#o, fsGroup %d: want no access for others, and the pod's fsGroup", w.kind, w.name, v.Name, mode, fsGroup)
				}
			case v.EmptyDir != nil:
				if v.EmptyDir.SizeLimit == nil {
					t.Errorf("%s %s volume %s: emptyDir needs a sizeLimit", w.kind, w.name, v.Name)
				}
			default:
				t.Errorf("%s %s volume %s: only ConfigMap, Secret and emptyDir volumes are expected", w.kind, w.name, v.Name)
			}
			for _, it := range items {
				if _, ok := keys[it.Key]; keys != nil && !ok {
					t.Errorf("%s %s volume %s: key %q is not generated", w.kind, w.name, v.Name, it.Key)
				}
			}
		}
		for _, c := range w.pod.Spec.Containers {
			for _, vm := range c.VolumeMounts {
				v, ok := vols[vm.Name]
				if !ok {
					t.Errorf("%s %s/%s: mounts unknown volume %s", w.kind, w.name, c.Name, vm.Name)
				}
				if (v.Secret != nil || v.ConfigMap != nil) && !vm.ReadOnly {
					t.Errorf("%s %s/%s: mount %s must be read-only", w.kind, w.name, c.Name, vm.Name)
				}
				if vm.SubPath != "" {
					t.Errorf("%s %s/%s: mount %s uses subPath, which never sees updates", w.kind, w.name, c.Name, vm.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					if _, ok := m.secrets[e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]; !ok {
						t.Errorf("%s %s/%s env %s: secret key %s/%s is not generated", w.kind, w.name, c.Name, e.Name,
							e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
					}
				}
			}
		}
	}
}

// mountedFile says which volume key serves the file at p in container c of
// pod ps, or why none does.
func mountedFile(m *manifests, ps corev1.PodSpec, c corev1.Container, p string) error {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name != vm.Name {
				continue
			}
			var keys map[string]string
			var items []corev1.KeyToPath
			switch {
			case v.Secret != nil:
				keys, items = m.secrets[v.Secret.SecretName], v.Secret.Items
			case v.ConfigMap != nil:
				keys, items = m.configMaps[v.ConfigMap.Name], v.ConfigMap.Items
			default:
				return fmt.Errorf("%s is on volume %s, which holds no generated file", p, v.Name)
			}
			if len(items) > 0 {
				for _, it := range items {
					if it.Path == rel {
						if _, ok := keys[it.Key]; ok {
							return nil
						}
					}
				}
				return fmt.Errorf("%s: volume %s does not project %s", p, v.Name, rel)
			}
			if _, ok := keys[rel]; !ok {
				return fmt.Errorf("%s: volume %s has no key %s", p, v.Name, rel)
			}
			return nil
		}
	}
	return fmt.Errorf("%s is under no volume mount", p)
}

// subcommand is the fraise subcommand a container runs: its args with
// image fraise (whose entrypoint is the binary).
func subcommand(c corev1.Container) string {
	if c.Image != "fraise" || len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

// mustRunHelp checks args name a real subcommand whose flags parse: with
// -h appended, fraise prints usage and returns nil; an unknown subcommand
// or flag is an error. args must carry --config, so that a command that
// did not stop at -h fails on the missing file instead of serving.
func mustRunHelp(tb testing.TB, args []string) {
	tb.Helper()
	if !slices.Contains(args, "--config") {
		tb.Errorf("%v: pass --config explicitly", args)
		return
	}
	var stderr bytes.Buffer
	getenv := func(string) string { return "" }
	err := cli.Run(context.Background(), append(slices.Clone(args), "-h"), getenv, io.Discard, &stderr)
	if err != nil {
		tb.Errorf("fraise %s: %v (%s)", strings.Join(args, " "), err, stderr.String())
	}
}

func TestMustRunHelpRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown subcommand", []string{"server", "--config", "x.toml"}},
		{"unknown flag", []string{"migrate", "--config", "x.toml", "--drop-everything"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &fakeTB{TB: t}
			mustRunHelp(ft, tt.args)
			if !ft.failed {
				t.Errorf("mustRunHelp(%v) passed", tt.args)
			}
		})
	}
}

// fakeTB records failures instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Errorf(string, ...any) { f.failed = true }
func (f *fakeTB) Helper()               {}

// listens returns the addresses the process listens on, by config key; an
// empty address is a port that is off.
func listens(cmd string, c config.Config) map[string]string {
	m := listensOrOff(cmd, c)
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return m
}

func listensOrOff(cmd string, c config.Config) map[string]string {
	switch cmd {
	case "serve":
		return map[string]string{"server.http_addr": c.Server.HTTPAddr, "server.flight_addr": c.Server.FlightAddr, "server.admin_addr": c.Server.AdminAddr}
	case "authz":
		return map[string]string{"authz.grpc_addr": c.Authz.GRPCAddr, "authz.admin_addr": c.Authz.AdminAddr, "authz.jwks_addr": c.Authz.JWKSAddr}
	case "ratelimit":
		return map[string]string{"ratelimit.grpc_addr": c.RateLimit.GRPCAddr, "ratelimit.http_addr": c.RateLimit.HTTPAddr, "ratelimit.debug_addr": c.RateLimit.DebugAddr}
	case "xds":
		return map[string]string{"xds.grpc_addr": c.XDS.GRPCAddr}
	case "envoy":
		return map[string]string{"gateway.listen_addr": c.Gateway.ListenAddr, "gateway.admin_addr": c.Gateway.AdminAddr}
	}
	return nil
}

// reads returns the files and secret references the process reads, by
// config key, as cmd/fraise wires it: each must be mounted (Kubernetes,
// Compose) or loaded as a credential (systemd) where the process runs.
// Envoy reads what the configuration `fraise xds` builds from fraise.toml
// names.
func reads(cmd string, c config.Config) map[string]string {
	r := map[string]string{}
	// The server side of mutual TLS: the certificate presented and the CA
	// client certificates must chain to.
	serverTLS := func() {
		r["tls.ca"], r["tls.server_cert"], r["tls.server_key"] = c.TLS.CA, c.TLS.ServerCert, c.TLS.ServerKey
	}
	// TLS towards PostgreSQL and Redis: the servers' CA and the client
	// certificate.
	dataTLS := func(key string, t config.DataTLS) {
		r[key+".ca"], r[key+".cert"], r[key+".key"] = t.CA, t.Cert, t.Key
	}
	switch cmd {
	case "serve":
		r["database.url"] = c.Database.URL
		dataTLS("database.tls", c.Database.TLS)
		r["flight.ticket_key"] = c.Flight.TicketKey
		for i, k := range c.Server.AssertionKeys {
			r[fmt.Sprintf("server.assertion_keys[%d]", i)] = k
		}
		if c.Server.TLS {
			// The HTTP and Flight listeners: the gateway's certificate only.
			serverTLS()
		}
		if c.Server.AssertionJWKSURL != "" {
			// extauthz's JWKS is verified against tls.ca alone.
			r["tls.ca"] = c.TLS.CA
		}
		if c.Observers.Enabled {
			r["redis.password"] = c.Redis.Password
			dataTLS("redis.tls", c.Redis.TLS)
			if c.Observers.RateLimits {
				// The workers' client certificate towards the rate limiter.
				r["tls.ca"], r["tls.core_client_cert"], r["tls.core_client_key"] = c.TLS.CA, c.TLS.CoreClientCert, c.TLS.CoreClientKey
			}
			if c.Observers.SMTP.Addr != "" {
				r["observers.smtp.password"], r["observers.smtp.ca"] = c.Observers.SMTP.Password, c.Observers.SMTP.CA
			}
		}
		r["server.trusted_documents"] = c.Server.TrustedDocuments
		if c.Server.Schema != "auto" { // "auto": generated from the database, no file
			r["server.schema"] = c.Server.Schema
		}
	case "authz":
		r["authz.assertion_key"], r["authz.database_url"] = c.Authz.AssertionKey, c.Authz.DatabaseURL
		if c.Authz.DatabaseURL != "" {
			dataTLS("database.tls", c.Database.TLS)
		}
		for i, is := range c.Authz.Issuers {
			r[fmt.Sprintf("authz.issuers[%d].jwks_file", i)] = is.JWKSFile
			r[fmt.Sprintf("authz.issuers[%d].hmac_secret", i)] = is.HMACSecret
		}
		// Its gRPC port is mutual TLS only (the gateway's certificate), and
		// authz.jwks_addr presents the same server certificate.
		serverTLS()
	case "ratelimit":
		r["redis.password"] = c.Redis.Password
		dataTLS("redis.tls", c.Redis.TLS)
		// Its gRPC port is mutual TLS only (the gateway's and the core's
		// client certificates).
		serverTLS()
	case "xds":
		// ADS over mutual TLS only (the gateway's certificate).
		serverTLS()
	case "migrate":
		// database.url: migrate sets the app role's password from it.
		r["database.admin_url"], r["database.url"], r["server.trusted_documents"] = c.Database.AdminURL, c.Database.URL, c.Server.TrustedDocuments
		// database.admin_url gets [database.tls] unless it sets sslmode
		// itself, which a reference hides: assume it does not.
		dataTLS("database.tls", c.Database.TLS)
	case "envoy":
		// The listener's certificate and the CA of its clients, and the
		// gateway certificate it presents to every upstream.
		serverTLS()
		r["tls.gateway_cert"], r["tls.gateway_key"] = c.TLS.GatewayCert, c.TLS.GatewayKey
	}
	for k, v := range r {
		if v == "" {
			delete(r, k)
		}
	}
	return r
}

// secretKeys are the keys whose values are credentials: in a deployment
// they must be references, never literals.
var secretKeys = []string{"database.url", "database.admin_url", "authz.database_url", "redis.password", "flight.ticket_key", "authz.assertion_key"}

func containerEnv(c corev1.Container) func(string) string {
	return func(k string) string {
		for _, e := range c.Env {
			if e.Name == k {
				return e.Value
			}
		}
		return ""
	}
}

// checkRequired fails when a deployed process does not run the profile
// it should, or would refuse to start in it for a setting its
// configuration lacks.
func checkRequired(t *testing.T, where, cmd string, c config.Config, profile string) {
	t.Helper()
	if !slices.Contains([]string{config.CommandServe, config.CommandAuthz, config.CommandRateLimit, config.CommandXDS, config.CommandMigrate}, cmd) {
		return
	}
	if c.Profile != profile {
		t.Errorf("%s: loaded in the %s profile, want %s", where, c.Profile, profile)
	}
	if err := c.Require(cmd); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

func mustLoadConfig(tb testing.TB, file string, getenv func(string) string) config.Config {
	tb.Helper()
	c, err := config.Load(file, getenv)
	if err != nil {
		tb.Fatalf("config.Load(%s): %v", file, err)
	}
	// What the project ships uses no deprecated key: an operator copying
	// it must not start from a warning.
	for _, d := range c.Deprecations {
		tb.Errorf("%s: %s", file, d)
	}
	return c
}

func portOf(tb testing.TB, key, addr string) (string, int32) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatalf("%s: %v", key, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		tb.Fatalf("%s: port %q: %v", key, port, err)
	}
	return host, int32(n)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func TestK8sConfigPerProcess(t *testing.T) {
	m := mustLoadManifests(t)
	file := filepath.Join(k8sDir, "fraise.toml")
	if m.configMaps["fraise-config"]["fraise.toml"] != "fraise.toml" {
		t.Fatal("the fraise-config ConfigMap must carry fraise.toml")
	}
	shared := mustLoadConfig(t, file, func(string) string { return "" })
	for _, key := range secretKeys {
		if v := reads("serve", shared)[key] + reads("authz", shared)[key] + reads("ratelimit", shared)[key] + reads("migrate", shared)[key]; v != "" && !config.IsReference(v) {
			t.Errorf("%s must be a file:// or env:// reference in a deployment, got a literal", key)
		}
	}
	seen := map[string]bool{}
	for _, w := range m.workloads() {
		for _, c := range w.pod.Spec.Containers {
			cmd := containerCommand(c)
			if c.Image != "fraise" {
				if cmd != "envoy" {
					continue
				}
				checkEnvoyImage(t, w.name+"/"+c.Name, c.Image)
			} else {
				mustRunHelp(t, c.Args)
				if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || mountedFile(m, w.pod.Spec, c, c.Args[i+1]) != nil {
					t.Errorf("%s/%s: --config must name the mounted fraise.toml", w.name, c.Name)
				}
			}
			seen[cmd] = true
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "FRAISE_") && e.ValueFrom == nil && slices.ContainsFunc(secretKeys, func(k string) bool {
					return e.Name == "FRAISE_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
				}) {
					t.Errorf("%s/%s: %s is a literal secret", w.name, c.Name, e.Name)
				}
			}
			cfg := mustLoadConfig(t, file, containerEnv(c))
			checkOperatorPorts(t, w.name+"/"+c.Name, cmd, cfg)
			for key, addr := range listens(cmd, cfg) {
				if addr == "" {
					continue
				}
				host, port := portOf(t, key, addr)
				if isLoopback(host) {
					continue
				}
				if host != "0.0.0.0" && host != "" {
					t.Errorf("%s/%s: %s = %q: a pod listens on 0.0.0.0 (override it with FRAISE_*)", w.name, c.Name, key, addr)
				}
				if _, ok := findPort([]corev1.Container{c}, intstr.FromInt32(port)); !ok {
					t.Errorf("%s/%s: %s port %d is no container port", w.name, c.Name, key, port)
				}
			}
			for key, ref := range reads(cmd, cfg) {
				p := strings.TrimPrefix(ref, "file://")
				if name, ok := strings.CutPrefix(ref, "env://"); ok {
					if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
						return e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
					}) {
						t.Errorf("%s/%s: %s = %s, but %s does not come from a Secret", w.name, c.Name, key, ref, name)
					}
					continue
				}
				if err := mountedFile(m, w.pod.Spec, c, p); err != nil {
					t.Errorf("%s/%s: %s: %v", w.name, c.Name, key, err)
				}
			}
		}
	}
	for _, want := range []string{"serve", "authz", "ratelimit", "xds", "migrate", "envoy"} {
		if !seen[want] {
			t.Errorf("no container runs %s", want)
		}
	}
	// What `fraise xds` hands Envoy as upstreams are Service names and ports,
	// each selecting the process that serves them.
	for _, up := range []struct{ key, addr, component string }{
		{"server.http_addr", shared.Server.HTTPAddr, "core"},
		{"server.flight_addr", shared.Server.FlightAddr, "core"},
		{"authz.grpc_addr", shared.Authz.GRPCAddr, "authz"},
		{"ratelimit.grpc_addr", shared.RateLimit.GRPCAddr, "ratelimit"},
		{"xds.grpc_addr", shared.XDS.GRPCAddr, "xds"},
	} {
		host, port := portOf(t, up.key, up.addr)
		svc := m.services[host]
		if svc == nil {
			t.Errorf("%s = %q: no Service %q", up.key, up.addr, host)
			continue
		}
		if svc.Spec.Selector["app.kubernetes.io/component"] != up.component {
			t.Errorf("%s: Service %s does not select the %s", up.key, host, up.component)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
			t.Errorf("%s = %q: Service %s has no port %d", up.key, up.addr, host, port)
		}
	}
}

func TestK8sGraceCoversDrain(t *testing.T) {
	m := mustLoadManifests(t)
	cfg := mustLoadConfig(t, filepath.Join(k8sDir, "fraise.toml"), func(string) string { return "" })
	for _, name := range sortedKeys(m.deployments) {
		ps := m.deployments[name].Spec.Template.Spec
		grace := ptrOr(ps.TerminationGracePeriodSeconds, 30)
		var need float64
		for _, c := range ps.Containers {
			var preStop int64
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = c.Lifecycle.PreStop.Sleep.Seconds
			}
			drain := map[string]float64{
				"serve": cfg.Server.DrainDelay.Seconds() + cfg.Server.ShutdownTimeout.Seconds(),
				"authz": cfg.Authz.DrainDelay.Seconds() + cfg.Authz.ShutdownTimeout.Seconds(),
			}[subcommand(c)]
			need = max(need, float64(preStop)+drain)
		}
		if float64(grace) <= need {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %d leaves no margin over preStop plus drain (%gs)", name, grace, need)
		}
	}
	// The core must sleep before draining: it stops listening as soon as
	// it is told, before endpoints and Envoy's DNS have caught up.
	for _, c := range m.deployments["core"].Spec.Template.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 3 {
			t.Errorf("core/%s: needs a preStop sleep of at least 3s", c.Name)
		}
	}
}

func TestK8sScaling(t *testing.T) {
	m := mustLoadManifests(t)
	// A Deployment an HPA scales leaves replicas unset (kubectl apply would
	// reset the autoscaler's count) and starts at the HPA's minimum.
	replicas := map[string]int32{}
	for name, d := range m.deployments {
		replicas[name] = ptrOr(d.Spec.Replicas, 1)
	}
	for _, h := range m.hpas {
		if d := m.deployments[h.Spec.ScaleTargetRef.Name]; d != nil {
			if d.Spec.Replicas != nil {
				t.Errorf("Deployment %s: replicas is set, but HPA %s owns the count", d.Name, h.Name)
			}
			replicas[d.Name] = ptrOr(h.Spec.MinReplicas, 1)
		}
	}
	pdbFor := map[string]*policyv1.PodDisruptionBudget{}
	for _, p := range m.pdbs {
		var matched []string
		for name, d := range m.deployments {
			if selects(p.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				matched = append(matched, name)
			}
		}
		if len(matched) != 1 {
			t.Errorf("PDB %s selects %v, want one Deployment", p.Name, matched)
			continue
		}
		d := m.deployments[matched[0]]
		pdbFor[matched[0]] = p
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.Type != intstr.Int {
			t.Errorf("PDB %s: want an integer minAvailable", p.Name)
		} else if p.Spec.MinAvailable.IntVal >= replicas[d.Name] {
			t.Errorf("PDB %s: minAvailable %d blocks every eviction of %d replicas", p.Name, p.Spec.MinAvailable.IntVal, replicas[d.Name])
		}
	}
	if pdbFor["core"] == nil {
		t.Error("the core has no PodDisruptionBudget")
	}
	var coreHPA bool
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		d := m.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
			t.Errorf("HPA %s targets %s %s/%s, which is not declared", h.Name, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		coreHPA = coreHPA || ref.Name == "core"
		minR := ptrOr(h.Spec.MinReplicas, 1)
		if minR < 2 || minR > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: minReplicas %d, maxReplicas %d: want 2 <= min <= max", h.Name, minR, h.Spec.MaxReplicas)
		}
		if p := pdbFor[ref.Name]; p != nil && p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntVal >= minR {
			t.Errorf("HPA %s: minReplicas %d leaves the PDB no eviction", h.Name, minR)
		}
		for _, mt := range h.Spec.Metrics {
			if mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU {
				for _, c := range d.Spec.Template.Spec.Containers {
					if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
						t.Errorf("HPA %s scales on CPU, but %s has no CPU request", h.Name, c.Name)
					}
				}
			}
		}
	}
	if !coreHPA {
		t.Error("the core has no HorizontalPodAutoscaler")
	}
}

// hops returns the connections between Fraise's processes that cfg makes,
// as component → the ports of each component it dials: Envoy reaches the
// core, extauthz, the rate limiter and xds; the core reaches the rate
// limiter for the observers' action limits and extauthz's JWKS port when
// it follows the assertion keys there.
func hops(tb testing.TB, c config.Config) map[string]map[string][]int32 {
	tb.Helper()
	port := func(key, addr string) int32 {
		_, p := portOf(tb, key, addr)
		return p
	}
	h := map[string]map[string][]int32{
		"envoy": {
			"core":      {port("server.http_addr", c.Server.HTTPAddr)},
			"authz":     {port("authz.grpc_addr", c.Authz.GRPCAddr)},
			"ratelimit": {port("ratelimit.grpc_addr", c.RateLimit.GRPCAddr)},
			"xds":       {port("xds.grpc_addr", c.XDS.GRPCAddr)},
		},
		"core": {},
	}
	if c.Server.FlightAddr != "" {
		h["envoy"]["core"] = append(h["envoy"]["core"], port("server.flight_addr", c.Server.FlightAddr))
	}
	if c.Observers.Enabled && c.Observers.RateLimits {
		h["core"]["ratelimit"] = []int32{port("ratelimit.grpc_addr", c.RateLimit.GRPCAddr)}
	}
	if c.Server.AssertionJWKSURL != "" {
		u, err := url.Parse(c.Server.AssertionJWKSURL)
		if err != nil {
			tb.Fatal(err)
		}
		h["core"]["authz"] = []int32{port("server.assertion_jwks_url", u.Host)}
	}
	return h
}

// TestK8sNetworkPolicies: exactly the hops the configuration makes are
// allowed, each from exactly the component that makes it; the admin ports
// admit no pod (the monitoring namespace only); nothing but Envoy's
// listener is open to the world.
func TestK8sNetworkPolicies(t *testing.T) {
	m := mustLoadManifests(t)
	shared := mustLoadConfig(t, filepath.Join(k8sDir, "fraise.toml"), func(string) string { return "" })
	// allowed reports whether a pod with labels from may reach port on
	// the workload with labels to, under the policies that select it.
	allowed := func(from, to map[string]string, port int32) bool {
		var selected, ok bool
		for _, p := range m.policies {
			if !selects(p.Spec.PodSelector.MatchLabels, to) {
				continue
			}
			selected = true
			for _, rule := range p.Spec.Ingress {
				portOK := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
					return np.Port != nil && np.Port.Type == intstr.Int && np.Port.IntVal == port
				})
				fromOK := len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(peer networkingv1.NetworkPolicyPeer) bool {
					return peer.PodSelector != nil && peer.NamespaceSelector == nil && selects(peer.PodSelector.MatchLabels, from)
				})
				ok = ok || (portOK && fromOK)
			}
		}
		return !selected || ok
	}
	labels := map[string]map[string]string{"other": {"app.kubernetes.io/name": "something-else"}}
	for name, d := range m.deployments {
		labels[name] = d.Spec.Template.Labels
	}
	for name, j := range m.jobs {
		labels[name] = j.Spec.Template.Labels
	}
	want := hops(t, shared)
	for _, name := range []string{"core", "authz", "ratelimit", "xds"} {
		d := m.deployments[name]
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				for _, from := range sortedKeys(labels) {
					got := allowed(labels[from], labels[name], p.ContainerPort)
					should := from != name && slices.Contains(want[from][name], p.ContainerPort)
					switch {
					case got && !should && p.Name == "admin":
						t.Errorf("%s: %s reaches admin port %d: only the monitoring namespace should", name, from, p.ContainerPort)
					case got && !should:
						t.Errorf("%s: %s reaches port %d (%s), which it never dials", name, from, p.ContainerPort, p.Name)
					case !got && should:
						t.Errorf("%s: %s cannot reach port %d (%s), which it dials", name, from, p.ContainerPort, p.Name)
					}
				}
			}
		}
	}
	for from, tos := range want {
		for to, ports := range tos {
			for _, p := range ports {
				if _, ok := findPort(m.deployments[to].Spec.Template.Spec.Containers, intstr.FromInt32(p)); !ok {
					t.Errorf("%s dials %s on port %d, which is no container port of %s", from, to, p, to)
				}
			}
		}
	}
	_, listen := portOf(t, "gateway.listen_addr", shared.Gateway.ListenAddr)
	if !allowed(labels["other"], labels["envoy"], listen) {
		t.Error("nothing outside reaches Envoy's listener")
	}
	if allowed(labels["other"], labels["envoy"], 9901) {
		t.Error("Envoy's admin port is open")
	}
	if allowed(labels["other"], labels["migrate"], 80) {
		t.Error("the migrate Job accepts connections")
	}
}

// TestK8sEnvoyBootstrap: the Envoy Deployment runs the bootstrap `make
// generate` writes from deploy/k8s/fraise.toml, which presents the gateway
// certificate from where the pod mounts it; so does the configuration the
// xds Deployment serves.
func TestK8sEnvoyBootstrap(t *testing.T) {
	m := mustLoadManifests(t)
	src := m.configMaps["envoy-bootstrap"]["bootstrap-xds.yaml"]
	if src == "" {
		t.Fatal("the envoy-bootstrap ConfigMap must carry bootstrap-xds.yaml")
	}
	file := filepath.Join(k8sDir, "fraise.toml")
	checkBootstrapCurrent(t, filepath.Join(k8sDir, src), file)
	boot, err := os.ReadFile(filepath.Join(k8sDir, src))
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustLoadConfig(t, file, func(string) string { return "" })
	checkBootstrap(t, boot, cfg)
	var xdsEnv func(string) string
	for _, c := range m.deployments["xds"].Spec.Template.Spec.Containers {
		if subcommand(c) == "xds" {
			xdsEnv = containerEnv(c)
		}
	}
	if xdsEnv == nil {
		t.Fatal("no xds container")
	}
	served := mustGenerateBootstrap(t, file, xdsEnv, "--out")
	checkEnvoyTLS(t, "deploy/k8s", boot, served, mustLoadConfig(t, file, xdsEnv))
	_, listen := portOf(t, "gateway.listen_addr", cfg.Gateway.ListenAddr)
	if _, ok := findPort(m.deployments["envoy"].Spec.Template.Spec.Containers, intstr.FromInt32(listen)); !ok {
		t.Errorf("gateway.listen_addr port %d is no port of the envoy container", listen)
	}
	var args string
	for _, c := range m.deployments["envoy"].Spec.Template.Spec.Containers {
		args = strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
		for _, vm := range c.VolumeMounts {
			if strings.Contains(args, "-c "+vm.MountPath+"/bootstrap-xds.yaml") {
				return
			}
		}
	}
	t.Errorf("envoy runs %q, which does not load the mounted bootstrap", args)
}

// checkBootstrap checks an xDS bootstrap names the node xds serves and
// points its xds cluster at xds.grpc_addr.
func checkBootstrap(t *testing.T, bootstrap []byte, cfg config.Config) {
	t.Helper()
	var boot struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
		StaticResources struct {
			Clusters []struct {
				Name           string `json:"name"`
				LoadAssignment struct {
					Endpoints []struct {
						LbEndpoints []struct {
							Endpoint struct {
								Address struct {
									SocketAddress struct {
										Address   string `json:"address"`
										PortValue int32  `json:"portValue"`
									} `json:"socketAddress"`
								} `json:"address"`
							} `json:"endpoint"`
						} `json:"lbEndpoints"`
					} `json:"endpoints"`
				} `json:"loadAssignment"`
			} `json:"clusters"`
		} `json:"staticResources"`
	}
	if err := yaml.Unmarshal(bootstrap, &boot); err != nil {
		t.Fatal(err)
	}
	if boot.Node.ID != cfg.XDS.NodeID {
		t.Errorf("bootstrap node id %q, xds.node_id %q: xds would serve Envoy nothing", boot.Node.ID, cfg.XDS.NodeID)
	}
	host, port := portOf(t, "xds.grpc_addr", cfg.XDS.GRPCAddr)
	var found bool
	for _, c := range boot.StaticResources.Clusters {
		for _, e := range c.LoadAssignment.Endpoints {
			for _, lb := range e.LbEndpoints {
				sa := lb.Endpoint.Address.SocketAddress
				found = found || (c.Name == "xds" && sa.Address == host && sa.PortValue == port)
			}
		}
	}
	if !found {
		t.Errorf("the bootstrap's xds cluster does not point at xds.grpc_addr %s", cfg.XDS.GRPCAddr)
	}
}

// secretAt returns the Secret the container mounts the file at p from.
func secretAt(ps corev1.PodSpec, c corev1.Container, p string) string {
	for _, vm := range c.VolumeMounts {
		if !strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// certificate is the part of cert-manager's Certificate the example uses,
// decoded strictly so that a misspelt field fails here.
type certificate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		IsCA        bool     `json:"isCA"`
		CommonName  string   `json:"commonName"`
		SecretName  string   `json:"secretName"`
		DNSNames    []string `json:"dnsNames"`
		Usages      []string `json:"usages"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
		// Issuer fields.
		SelfSigned *struct{} `json:"selfSigned"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

// TestK8sCertManagerExample: the example cert-manager Certificates issue
// the Secrets the pods mount, each with the SAN and usage fraise.toml pins
// (tls.server_name on the internal servers' certificate, tls.gateway_san
// and tls.core_client_san on the client certificates).
func TestK8sCertManagerExample(t *testing.T) {
	m := mustLoadManifests(t)
	cfg := mustLoadConfig(t, filepath.Join(k8sDir, "fraise.toml"), func(string) string { return "" })
	data, err := os.ReadFile(filepath.Join(k8sDir, "cert-manager", "certificates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]certificate{} // by secretName
	issuers := map[string]bool{}
	for i, doc := range docSeparator.Split(string(data), -1) {
		if !hasContent([]byte(doc)) {
			continue
		}
		var c certificate
		if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		if c.APIVersion != "cert-manager.io/v1" {
			t.Errorf("%s %s: apiVersion %q", c.Kind, c.Metadata.Name, c.APIVersion)
		}
		switch c.Kind {
		case "Issuer":
			issuers[c.Metadata.Name] = true
		case "Certificate":
			certs[c.Spec.SecretName] = c
		default:
			t.Errorf("document %d: kind %q", i+1, c.Kind)
		}
	}
	for _, c := range certs {
		if !issuers[c.Spec.IssuerRef.Name] || c.Spec.IssuerRef.Kind != "Issuer" {
			t.Errorf("Certificate %s: issuer %s %q is not in the example", c.Metadata.Name, c.Spec.IssuerRef.Kind, c.Spec.IssuerRef.Name)
		}
	}
	for _, want := range []struct {
		deployment, key, path, san, usage string
	}{
		{"core", "tls.server_cert", cfg.TLS.ServerCert, cfg.TLS.ServerName, "server auth"},
		{"authz", "tls.server_cert", cfg.TLS.ServerCert, cfg.TLS.ServerName, "server auth"},
		{"ratelimit", "tls.server_cert", cfg.TLS.ServerCert, cfg.TLS.ServerName, "server auth"},
		{"xds", "tls.server_cert", cfg.TLS.ServerCert, cfg.TLS.ServerName, "server auth"},
		{"envoy", "tls.gateway_cert", cfg.TLS.GatewayCert, cfg.TLS.GatewaySAN, "client auth"},
		{"core", "tls.core_client_cert", cfg.TLS.CoreClientCert, cfg.TLS.CoreClientSAN, "client auth"},
		{"envoy", "tls.server_cert", cfg.TLS.ServerCert, "", "server auth"},
		// The client certificates towards PostgreSQL and Redis.
		{"core", "database.tls.cert", cfg.Database.TLS.Cert, "", "client auth"},
		{"authz", "database.tls.cert", cfg.Database.TLS.Cert, "", "client auth"},
		{"core", "redis.tls.cert", cfg.Redis.TLS.Cert, "", "client auth"},
		{"ratelimit", "redis.tls.cert", cfg.Redis.TLS.Cert, "", "client auth"},
	} {
		ps := m.deployments[want.deployment].Spec.Template.Spec
		secret := secretAt(ps, ps.Containers[0], want.path)
		c, ok := certs[secret]
		switch {
		case secret == "":
			t.Errorf("%s: %s = %s comes from no Secret", want.deployment, want.key, want.path)
		case !ok:
			t.Errorf("%s: %s comes from Secret %s, which no example Certificate issues", want.deployment, want.key, secret)
		case want.san != "" && !slices.Contains(c.Spec.DNSNames, want.san):
			t.Errorf("Certificate %s (%s of %s): dnsNames %v, want %q", c.Metadata.Name, want.key, want.deployment, c.Spec.DNSNames, want.san)
		case !slices.Contains(c.Spec.Usages, want.usage) || c.Spec.IsCA:
			t.Errorf("Certificate %s (%s of %s): usages %v, want %q", c.Metadata.Name, want.key, want.deployment, c.Spec.Usages, want.usage)
		}
	}
	// Pinned names belong to their own certificate alone.
	for _, c := range certs {
		for _, pinned := range []struct{ san, secret string }{{cfg.TLS.GatewaySAN, "fraise-gateway-tls"}, {cfg.TLS.CoreClientSAN, "fraise-core-client-tls"}} {
			if slices.Contains(c.Spec.DNSNames, pinned.san) && c.Spec.SecretName != pinned.secret {
				t.Errorf("Certificate %s names %s, which only %s may", c.Metadata.Name, pinned.san, pinned.secret)
			}
		}
	}
}
