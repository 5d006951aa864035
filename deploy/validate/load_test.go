package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// repoRoot is kseal's module root, seen from this package's directory.
const repoRoot = "../.."

// variant is one deployable directory of manifests.
type variant struct {
	dir string
	sni bool // one TLS port routed by server name, instead of a port per broker
	// helm: rendered from the chart (helm_test.go) rather than read from
	// dir: no kustomization, every object in the release's namespace, and
	// Secrets are referenced, not shipped (their volumes list the keys).
	helm      bool
	namespace string // the release's namespace (helm)
}

var variants = []variant{
	{dir: "../kubernetes"},
	{dir: "../kubernetes/sni", sni: true},
}

// bundle is every object of one variant's directory, by name.
type bundle struct {
	dir             string
	files           map[string][]object // file name -> its objects
	namespaces      map[string]*corev1.Namespace
	serviceAccounts map[string]*corev1.ServiceAccount
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	pdbs            map[string]*policyv1.PodDisruptionBudget
	pvcs            map[string]*corev1.PersistentVolumeClaim
	serviceMonitors map[string]*serviceMonitor
}

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	meta *metav1.ObjectMeta
	obj  any
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.kind, o.meta.Namespace, o.meta.Name, o.file)
}

// kustomizationFile is not a Kubernetes object and is decoded on its own.
const kustomizationFile = "kustomization.yaml"

// loadBundle strictly decodes every YAML document of dir's manifests
// (not its subdirectories).
func loadBundle(t *testing.T, dir string) *bundle {
	t.Helper()
	b := newBundle(dir)
	names, err := manifestFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("%s: no manifests", dir)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeManifests(name, data)
		if err != nil {
			t.Fatal(err)
		}
		b.files[name] = objs
		for _, o := range objs {
			if err := b.add(o); err != nil {
				t.Fatalf("%s: %v", o, err)
			}
		}
	}
	return b
}

func newBundle(dir string) *bundle {
	return &bundle{
		dir:             dir,
		files:           map[string][]object{},
		namespaces:      map[string]*corev1.Namespace{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		deployments:     map[string]*appsv1.Deployment{},
		services:        map[string]*corev1.Service{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		pvcs:            map[string]*corev1.PersistentVolumeClaim{},
		serviceMonitors: map[string]*serviceMonitor{},
	}
}

// manifestFiles lists dir's *.yaml files other than the kustomization.
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) && n != kustomizationFile {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (b *bundle) add(o object) error {
	switch v := o.obj.(type) {
	case *corev1.Namespace:
		return putOnce(b.namespaces, o.meta.Name, v)
	case *corev1.ServiceAccount:
		return putOnce(b.serviceAccounts, o.meta.Name, v)
	case *corev1.ConfigMap:
		return putOnce(b.configMaps, o.meta.Name, v)
	case *corev1.Secret:
		return putOnce(b.secrets, o.meta.Name, v)
	case *appsv1.Deployment:
		return putOnce(b.deployments, o.meta.Name, v)
	case *corev1.Service:
		return putOnce(b.services, o.meta.Name, v)
	case *policyv1.PodDisruptionBudget:
		return putOnce(b.pdbs, o.meta.Name, v)
	case *corev1.PersistentVolumeClaim:
		return putOnce(b.pvcs, o.meta.Name, v)
	case *serviceMonitor:
		return putOnce(b.serviceMonitors, o.meta.Name, v)
	}
	return fmt.Errorf("no place for %T", o.obj)
}

// putOnce refuses a second object of the same kind and name: applying both
// would silently keep only the last.
func putOnce[T any](m map[string]T, name string, v T) error {
	if _, dup := m[name]; dup {
		return fmt.Errorf("defined twice")
	}
	m[name] = v
	return nil
}

// newObject returns an empty typed object for apiVersion and kind: only the
// kinds kseal's manifests use, so a typo in either is an error too.
func newObject(apiVersion, kind string) (any, *metav1.ObjectMeta, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		return o, &o.ObjectMeta, nil
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta, nil
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta, nil
	case "v1 Secret":
		o := &corev1.Secret{}
		return o, &o.ObjectMeta, nil
	case "v1 Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta, nil
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, nil
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, nil
	case "v1 PersistentVolumeClaim":
		o := &corev1.PersistentVolumeClaim{}
		return o, &o.ObjectMeta, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &serviceMonitor{}
		return o, &o.ObjectMeta, nil
	}
	return nil, nil, fmt.Errorf("unexpected apiVersion %q kind %q", apiVersion, kind)
}

// serviceMonitor is the part of the prometheus-operator's ServiceMonitor
// that the chart uses (its Go types live in a module of their own); decoded
// strictly, so any other field fails.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeManifests splits a multi-document YAML file and decodes each
// document strictly: unknown fields, duplicate fields and wrong types are
// errors, as `kubectl apply` with server-side field validation would report.
func decodeManifests(file string, data []byte) ([]object, error) {
	var objs []object
	for i, doc := range splitDocuments(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		obj, meta, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", file, i+1, tm.Kind, err)
		}
		if meta.Name == "" {
			return nil, fmt.Errorf("%s document %d (%s): metadata.name is empty", file, i+1, tm.Kind)
		}
		objs = append(objs, object{file: file, kind: tm.Kind, meta: meta, obj: obj})
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no documents", file)
	}
	return objs, nil
}

// splitDocuments splits YAML at "---" lines, dropping documents that hold
// only comments or blank lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range bytes.Lines(data) {
		if bytes.Equal(bytes.TrimRight(line, " \t\r\n"), []byte("---")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		s := bytes.TrimSpace(line)
		if len(s) > 0 && s[0] != '#' {
			return true
		}
	}
	return false
}

// kustomization is the part of kustomize's Kustomization that kseal's files
// use; decoded strictly, so any other field fails here first.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
}

func loadKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, kustomizationFile))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/%s: %v", dir, kustomizationFile, err)
	}
	return k
}

// ksealConfig is the part of kseal.yaml that the manifests must agree with.
// `kseal validate` checks the whole file; this only reads it.
type ksealConfig struct {
	Admin struct {
		Listen string `json:"listen"`
	} `json:"admin"`
	DrainTimeout    string `json:"drainTimeout"`
	VirtualClusters []struct {
		Name    string `json:"name"`
		Gateway struct {
			BindAddress     string          `json:"bindAddress"`
			AdvertisedHost  string          `json:"advertisedHost"`
			BootstrapPort   int32           `json:"bootstrapPort"`
			BrokerPortStart int32           `json:"brokerPortStart"`
			BrokerPortCount int32           `json:"brokerPortCount"`
			TLS             *map[string]any `json:"tls"`
			SNI             *struct {
				AdvertisedPort int32 `json:"advertisedPort"`
			} `json:"sni"`
		} `json:"gateway"`
	} `json:"virtualClusters"`
}
