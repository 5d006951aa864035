package validate

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestChecksCatch breaks the shipped manifests one way at a time and expects
// the checks to say so: a check that cannot fail would prove nothing.
func TestChecksCatch(t *testing.T) {
	ptr := func(v int64) *int64 { return &v }
	editConfig := func(old, new string) func(*checks) {
		return func(c *checks) {
			doc := string(c.cfgDoc)
			if !strings.Contains(doc, old) {
				t.Fatalf("kseal.yaml has no %q to replace", old)
			}
			c.cfgDoc = []byte(strings.Replace(doc, old, new, 1))
			c.cfg = ksealConfig{}
			if err := yaml.Unmarshal(c.cfgDoc, &c.cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	servicePort := func(c *checks, svc, name string) *corev1.ServicePort {
		for i, p := range c.b.services[svc].Spec.Ports {
			if p.Name == name {
				return &c.b.services[svc].Spec.Ports[i]
			}
		}
		t.Fatalf("Service %s has no port %s", svc, name)
		return nil
	}
	tests := []struct {
		name   string
		sni    bool
		mutate func(*checks)
		want   string
	}{
		{"readiness on a Kafka port", false, func(c *checks) {
			c.ctr.ReadinessProbe.HTTPGet.Port = intstr.FromString("bootstrap")
		}, "readinessProbe port"},
		{"liveness depends on Kafka", false, func(c *checks) { c.ctr.LivenessProbe.HTTPGet.Path = "/readyz" }, "livenessProbe path"},
		{"no liveness probe", true, func(c *checks) { c.ctr.LivenessProbe = nil }, "livenessProbe must be"},
		{"grace period shorter than drain", false, func(c *checks) { c.pod.TerminationGracePeriodSeconds = ptr(35) }, "terminationGracePeriodSeconds"},
		{"preStop needs a shell", false, func(c *checks) {
			c.ctr.Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "10"}}}
		}, "no shell"},
		{"longer drain in the config", false, editConfig("drainTimeout: 30s", "drainTimeout: 2m"), "terminationGracePeriodSeconds"},
		{"writable root", false, func(c *checks) { c.ctr.SecurityContext.ReadOnlyRootFilesystem = nil }, "readOnlyRootFilesystem"},
		{"root user", false, func(c *checks) { c.pod.SecurityContext.RunAsUser = ptr(0) }, "runAsUser"},
		{"capability added", true, func(c *checks) {
			c.ctr.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "capabilities"},
		{"token mounted", false, func(c *checks) {
			c.pod.AutomountServiceAccountToken = nil
		}, "automountServiceAccountToken"},
		{"no memory limit", false, func(c *checks) { delete(c.ctr.Resources.Limits, corev1.ResourceMemory) }, "must both set memory"},
		{"GOMEMLIMIT above the limit", false, func(c *checks) {
			c.ctr.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
			c.ctr.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("1Gi")
		}, "GOMEMLIMIT"},
		{"broker port missing from the pod", false, func(c *checks) {
			c.ctr.Ports = slices.DeleteFunc(c.ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == "broker-5" })
		}, "container ports"},
		{"more brokers in the config than ports", false, editConfig("brokerPortCount: 6", "brokerPortCount: 8"), "container ports"},
		{"unnamed port", true, func(c *checks) { c.ctr.Ports[0].Name = "" }, "not a valid port name"},
		{"broker port not behind the Service", false, func(c *checks) {
			s := c.b.services["kseal"]
			s.Spec.Ports = slices.DeleteFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "broker-5" })
		}, "not exposed by any Service"},
		{"Service renumbers a broker port", false, func(c *checks) { servicePort(c, "kseal", "broker-0").Port = 19100 }, "advertised broker port"},
		{"Service targets a missing port", false, func(c *checks) {
			servicePort(c, "kseal", "broker-0").TargetPort = intstr.FromString("broker-9")
		}, "is no container port"},
		{"admin on the load balancer", false, func(c *checks) {
			s := c.b.services["kseal"]
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "admin", Port: 9190, TargetPort: intstr.FromString("admin")})
		}, "admin port outside"},
		{"Service selects nothing", true, func(c *checks) {
			c.b.services["kseal"].Spec.Selector = map[string]string{"app": "other"}
		}, "does not select"},
		{"SNI load balancer on the wrong port", true, func(c *checks) { servicePort(c, "kseal", "kafka-tls").Port = 9093 }, "advertisedPort"},
		{"admin on loopback", false, editConfig("listen: 0.0.0.0:9190", "listen: 127.0.0.1:9190"), "admin.listen"},
		{"advertised as localhost", false, editConfig("advertisedHost: kafka-proxy.example.com", "advertisedHost: localhost"), "advertisedHost"},
		{"token file not in the Secret", false, editConfig("vault/token", "vault/tok"), "tokenFile"},
		{"certificate not mounted", true, editConfig("/var/run/secrets/kseal/tls/tls.key", "/etc/tls/tls.key"), "no volume is mounted"},
		{"Secret readable by others", false, func(c *checks) {
			for _, v := range c.pod.Volumes {
				if v.Secret != nil {
					m := int32(0o444)
					v.Secret.DefaultMode = &m
				}
			}
		}, "readable by others"},
		{"PDB blocks every drain", false, func(c *checks) {
			zero := intstr.FromInt32(0)
			c.b.pdbs["kseal"].Spec.MaxUnavailable = &zero
		}, "PodDisruptionBudget"},
		{"one replica", false, func(c *checks) { one := int32(1); c.dep.Spec.Replicas = &one }, "replicas"},
		{"no scrape annotation", false, func(c *checks) {
			delete(c.dep.Spec.Template.Annotations, "prometheus.io/port")
		}, "prometheus.io"},
		{"wrong namespace", false, func(c *checks) { c.b.services["kseal-admin"].Namespace = "default" }, "namespace"},
		{"latest image", false, func(c *checks) { c.ctr.Image = "kseal:latest" }, "image"},
		{"manifest left out of the kustomization", false, func(c *checks) {
			c.k.Resources = slices.DeleteFunc(c.k.Resources, func(s string) bool { return s == "pdb.yaml" })
		}, "resources"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := variants[0]
			if tc.sni {
				v = variants[1]
			}
			c := newChecks(t, loadBundle(t, v.dir), v)
			if p := c.run(); len(p) != 0 {
				t.Fatalf("the shipped manifests already fail: %q", p)
			}
			c = newChecks(t, loadBundle(t, v.dir), v)
			tc.mutate(c)
			problems := c.run()
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem mentions %q; got %q", tc.want, problems)
			}
		})
	}
}

// TestStrictDecoding: a misspelt or misplaced field is an error, not
// silently dropped as a plain YAML decode would.
func TestStrictDecoding(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selecter: {a: b}}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: k, readinesProbe: {}}]}}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: LoadBalancer, type: ClusterIP}\n",
		"apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: nine}]}\n",
	} {
		if _, err := decodeManifests("t.yaml", []byte(doc)); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}

// TestVariantsAgree: the SNI directory repeats the port-per-broker one
// (kustomize cannot share files with a parent directory); apart from the
// client ports and the certificate, the copies must not drift apart.
func TestVariantsAgree(t *testing.T) {
	ports, sni := loadBundle(t, variants[0].dir), loadBundle(t, variants[1].dir)
	for file := range ports.files {
		switch file {
		case "configmap.yaml", "deployment.yaml", "service.yaml":
			continue
		}
		a, errA := os.ReadFile(filepath.Join(ports.dir, file))
		b, errB := os.ReadFile(filepath.Join(sni.dir, file))
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("%s differs between %s and %s (%v %v)", file, ports.dir, sni.dir, errA, errB)
		}
	}

	da, db := ports.deployments["kseal"].DeepCopy(), sni.deployments["kseal"].DeepCopy()
	if da == nil || db == nil {
		t.Fatal("no Deployment kseal in both")
	}
	for _, d := range []*corev1.PodSpec{&da.Spec.Template.Spec, &db.Spec.Template.Spec} {
		d.Containers[0].Ports = nil
		d.Containers[0].VolumeMounts = slices.DeleteFunc(d.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "tls" })
		d.Volumes = slices.DeleteFunc(d.Volumes, func(v corev1.Volume) bool { return v.Name == "tls" })
	}
	if !equality.Semantic.DeepEqual(da, db) {
		a, _ := yaml.Marshal(da)
		b, _ := yaml.Marshal(db)
		t.Errorf("the Deployments differ beyond ports and the tls volume:\n%s\n---\n%s", a, b)
	}

	withoutGateway := func(b *bundle) any {
		var tree map[string]any
		if err := yaml.Unmarshal([]byte(b.configMaps["kseal-config"].Data["kseal.yaml"]), &tree); err != nil {
			t.Fatal(err)
		}
		for _, vc := range tree["virtualClusters"].([]any) {
			delete(vc.(map[string]any), "gateway")
		}
		return tree
	}
	if a, b := withoutGateway(ports), withoutGateway(sni); !equality.Semantic.DeepEqual(a, b) {
		t.Errorf("the kseal.yaml files differ beyond gateway:\n%v\n%v", a, b)
	}
}

// TestKustomizeBuild runs kustomize (built into kubectl) when kubectl is
// installed, and checks it produces exactly the objects of the listed files.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: kustomize build not run")
	}
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", v.dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", v.dir, err)
			}
			built, err := decodeManifests("kustomize output", out)
			if err != nil {
				t.Fatal(err)
			}
			id := func(o object) string { return o.kind + " " + o.meta.Namespace + "/" + o.meta.Name }
			var want, got []string
			for file, objs := range loadBundle(t, v.dir).files {
				if secretTemplate(file) {
					continue
				}
				for _, o := range objs {
					want = append(want, id(o))
				}
			}
			for _, o := range built {
				got = append(got, id(o))
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("kustomize built %q, want %q", got, want)
			}
		})
	}
}
