package validate

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart, rendered here with Helm's own library (the
// engine `helm template` and `helm install` use), offline.
const chartDir = "../helm/kseal"

// The release the tests render: helm install kseal deploy/helm/kseal -n kseal.
const (
	releaseName      = "kseal"
	releaseNamespace = "kseal"
)

// minKubeVersion is the oldest Kubernetes the chart must accept (the
// preStop sleep action needs 1.30).
const minKubeVersion = "v1.30.0"

// helmExamples are the values files rendered and checked: the chart's
// defaults ("") and every file of examples/ (helmExampleFiles checks that
// none is left out). sni marks the SNI routing ones.
var helmExamples = []struct {
	file string
	sni  bool
}{
	{file: ""},
	{file: "examples/vault.yaml"},
	{file: "examples/aws-irsa.yaml"},
	{file: "examples/aws-static.yaml"},
	{file: "examples/aws-env.yaml"},
	{file: "examples/azure-client-secret.yaml"},
	{file: "examples/azure-managed-identity.yaml"},
	{file: "examples/local-secret.yaml"},
	{file: "examples/local-pvc.yaml"},
	{file: "examples/sni-servicemonitor.yaml", sni: true},
	{file: "examples/two-clusters.yaml"},
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("chart %s: %v", chartDir, err)
	}
	return ch
}

// renderChart renders the chart as `helm install --dry-run` would for a
// new release, with the values file (relative to the chart; "" for the
// defaults) and then overrides on top, in strict mode: a template reading a
// value that does not exist fails instead of rendering empty.
func renderChart(t *testing.T, ch *chart.Chart, valuesFile string, overrides map[string]any) (map[string]string, error) {
	t.Helper()
	vals := map[string]any{}
	if valuesFile != "" {
		v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, valuesFile))
		if err != nil {
			t.Fatal(err)
		}
		vals = v
	}
	if overrides != nil {
		vals = chartutil.CoalesceTables(overrides, vals)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(minKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	if ch.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		t.Fatalf("chart kubeVersion %q excludes %s", ch.Metadata.KubeVersion, minKubeVersion)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

// renderedBundle decodes the rendered manifests strictly, as loadBundle
// does for the kustomize directories.
func renderedBundle(t *testing.T, name string, rendered map[string]string) *bundle {
	t.Helper()
	b := newBundle(name)
	for _, file := range slices.Sorted(func(yield func(string) bool) {
		for k := range rendered {
			if !yield(k) {
				return
			}
		}
	}) {
		base := path.Base(file)
		if base == "NOTES.txt" || strings.HasPrefix(base, "_") || !hasContent([]byte(rendered[file])) {
			continue // not a manifest, or a template disabled by the values
		}
		objs, err := decodeManifests(file, []byte(rendered[file]))
		if err != nil {
			t.Fatal(err)
		}
		b.files[file] = objs
		for _, o := range objs {
			if err := b.add(o); err != nil {
				t.Fatalf("%s: %v", o, err)
			}
		}
	}
	return b
}

func helmVariant(file string, sni bool) variant {
	name := "helm:defaults"
	if file != "" {
		name = "helm:" + file
	}
	return variant{dir: name, sni: sni, helm: true, namespace: releaseNamespace}
}

// TestHelmChart renders the chart for its defaults and each example, then
// checks the output as TestManifests checks the kustomize directories:
// strict decoding into the k8s.io/api types, the same invariants, and
// `kseal validate` on the rendered ConfigMap's config.
func TestHelmChart(t *testing.T) {
	ch := loadChart(t)
	for _, ex := range helmExamples {
		v := helmVariant(ex.file, ex.sni)
		t.Run(v.dir, func(t *testing.T) {
			rendered, err := renderChart(t, ch, ex.file, nil)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			b := renderedBundle(t, v.dir, rendered)
			c := newChecks(t, b, v)
			if err := validateConfig(t, "kseal.yaml", c.cfgDoc); err != nil {
				t.Errorf("the ConfigMap's %s: %v", c.cfgKey, err)
			}
			for _, p := range c.run() {
				t.Error(p)
			}
			if notes := rendered[path.Join(ch.Name(), "templates", "NOTES.txt")]; !strings.Contains(notes, "port-forward") {
				t.Errorf("NOTES.txt rendered %q", notes)
			}
		})
	}
}

// TestHelmExamplesListed: every values file in examples/ is rendered by
// TestHelmChart.
func TestHelmExamplesListed(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(chartDir, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f := "examples/" + e.Name()
		if !slices.ContainsFunc(helmExamples, func(x struct {
			file string
			sni  bool
		}) bool {
			return x.file == f
		}) {
			t.Errorf("%s is not in helmExamples", f)
		}
	}
}

// TestHelmChecksCatch: values that would deploy a broken kseal fail, either
// when rendering (strict templates, the chart's own checks, its values
// schema) or in the checks TestHelmChart runs.
func TestHelmChecksCatch(t *testing.T) {
	ch := loadChart(t)
	tests := []struct {
		name      string
		file      string
		overrides map[string]any
		want      string // in the render error or in a problem
	}{
		{"no scrape annotations and no ServiceMonitor", "", map[string]any{"metrics": map[string]any{"podAnnotations": false}}, "prometheus.io"},
		{"grace period shorter than preStop plus drain", "", map[string]any{"terminationGracePeriodSeconds": 30}, "terminationGracePeriodSeconds"},
		{"writable root", "", map[string]any{"securityContext": map[string]any{"readOnlyRootFilesystem": false}}, "readOnlyRootFilesystem"},
		{"root user", "", map[string]any{"podSecurityContext": map[string]any{"runAsUser": 0}}, "runAsUser"},
		{"one replica", "", map[string]any{"replicaCount": 1}, "replicas"},
		{"PDB blocks every drain", "", map[string]any{"podDisruptionBudget": map[string]any{"maxUnavailable": 0}}, "PodDisruptionBudget"},
		{"admin on loopback", "", map[string]any{"config": map[string]any{"admin": map[string]any{"listen": "127.0.0.1:9190"}}}, "admin.listen"},
		{"GOMEMLIMIT above the limit", "", map[string]any{"goMemLimit": "3GiB"}, "GOMEMLIMIT"},
		{"unknown KMS", "", map[string]any{"kms": map[string]any{"type": "gcp"}}, "/kms/type"},
		{"misspelt value", "", map[string]any{"replicas": 5}, "replicas"},
		{"misspelt KMS value", "examples/aws-irsa.yaml", map[string]any{"kms": map[string]any{"aws": map[string]any{"roleARN": "x"}}}, "roleARN"},
		{"Azure client secret without tenant", "examples/azure-client-secret.yaml", map[string]any{"kms": map[string]any{"azure": map[string]any{"tenantId": ""}}}, "tenantId"},
		{"bad KMS config for kseal", "examples/vault.yaml", map[string]any{"kms": map[string]any{"vault": map[string]any{"config": map[string]any{"adress": "x"}}}}, "adress"},
		{"unknown local store", "examples/local-pvc.yaml", map[string]any{"kms": map[string]any{"local": map[string]any{"store": "disk"}}}, "/kms/local/store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rendered, err := renderChart(t, ch, tc.file, tc.overrides)
			if err != nil {
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("render failed without mentioning %q: %v", tc.want, err)
				}
				return
			}
			v := helmVariant(tc.file, false)
			c := newChecks(t, renderedBundle(t, v.dir, rendered), v)
			problems := c.run()
			if err := validateConfig(t, "kseal.yaml", c.cfgDoc); err != nil {
				problems = append(problems, err.Error())
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem mentions %q; got %q", tc.want, problems)
			}
		})
	}
}

// TestHelmLint runs `helm lint`'s checks (chart metadata, template syntax,
// values schema, YAML of the rendered output, deprecated APIs for the
// oldest supported Kubernetes) for the defaults and every example; a
// warning fails, information (e.g. no icon) does not.
func TestHelmLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(minKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range helmExamples {
		vals := map[string]any{}
		if ex.file != "" {
			v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			vals = v
		}
		l := lint.AllWithKubeVersion(chartDir, vals, releaseNamespace, kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (%s): %s", helmVariant(ex.file, ex.sni).dir, m)
			} else {
				t.Logf("helm lint (%s): %s", helmVariant(ex.file, ex.sni).dir, m)
			}
		}
	}
}

// TestHelmAgreesWithManifests: the chart's defaults and the kustomize
// manifests (deploy/kubernetes) describe the same pod; they must not drift
// apart in what matters for running it: security contexts, resources,
// probes, shutdown, rollout strategy, ports, environment, and kseal's
// config apart from the KMS credentials' paths.
func TestHelmAgreesWithManifests(t *testing.T) {
	rendered, err := renderChart(t, loadChart(t), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	v := helmVariant("", false)
	h := newChecks(t, renderedBundle(t, v.dir, rendered), v)
	k := newChecks(t, loadBundle(t, variants[0].dir), variants[0])

	same := func(what string, a, b any) {
		if !equality.Semantic.DeepEqual(a, b) {
			ya, _ := yaml.Marshal(a)
			yb, _ := yaml.Marshal(b)
			t.Errorf("%s differs between the chart's defaults and %s:\nchart:\n%s\nmanifests:\n%s", what, variants[0].dir, ya, yb)
		}
	}
	same("replicas", h.dep.Spec.Replicas, k.dep.Spec.Replicas)
	same("strategy", h.dep.Spec.Strategy, k.dep.Spec.Strategy)
	same("pod securityContext", h.pod.SecurityContext, k.pod.SecurityContext)
	same("terminationGracePeriodSeconds", h.pod.TerminationGracePeriodSeconds, k.pod.TerminationGracePeriodSeconds)
	same("automountServiceAccountToken", h.pod.AutomountServiceAccountToken, k.pod.AutomountServiceAccountToken)
	same("container securityContext", h.ctr.SecurityContext, k.ctr.SecurityContext)
	same("resources", h.ctr.Resources, k.ctr.Resources)
	same("readinessProbe", h.ctr.ReadinessProbe, k.ctr.ReadinessProbe)
	same("livenessProbe", h.ctr.LivenessProbe, k.ctr.LivenessProbe)
	same("lifecycle", h.ctr.Lifecycle, k.ctr.Lifecycle)
	same("env", h.ctr.Env, k.ctr.Env)
	same("args", h.ctr.Args, k.ctr.Args)
	same("ports", h.ctr.Ports, k.ctr.Ports)
	same("PodDisruptionBudget", h.b.pdbs["kseal"].Spec.MaxUnavailable, k.b.pdbs["kseal"].Spec.MaxUnavailable)

	withoutKMS := func(doc []byte) any {
		var tree map[string]any
		if err := yaml.Unmarshal(doc, &tree); err != nil {
			t.Fatal(err)
		}
		for _, vc := range tree["virtualClusters"].([]any) {
			if enc, ok := vc.(map[string]any)["encryption"].(map[string]any); ok {
				kms, _ := enc["kms"].(map[string]any)
				if kms == nil {
					t.Errorf("virtual cluster %v: no kms", vc.(map[string]any)["name"])
					continue
				}
				// The same provider and settings; only the mounted files'
				// paths differ (the chart's Secret is kseal-kms).
				cfg, _ := kms["config"].(map[string]any)
				delete(cfg, "tokenFile")
				delete(cfg, "tls")
			}
		}
		return tree
	}
	same("kseal.yaml (apart from the KMS files' paths)", withoutKMS(h.cfgDoc), withoutKMS(k.cfgDoc))
}
