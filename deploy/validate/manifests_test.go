package validate

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// TestManifests decodes each variant strictly, runs `kseal validate` on its
// config and checks that its objects agree with each other and with it.
func TestManifests(t *testing.T) {
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			b := loadBundle(t, v.dir)
			c := newChecks(t, b, v)
			if err := validateConfig(t, "kseal.yaml", c.cfgDoc); err != nil {
				t.Errorf("the ConfigMap's %s: %v", c.cfgKey, err)
			}
			for _, p := range c.run() {
				t.Error(p)
			}
		})
	}
}

// checks holds one variant's objects, found once, and collects problems.
type checks struct {
	b        *bundle
	v        variant
	k        kustomization
	dep      *appsv1.Deployment
	pod      *corev1.PodSpec
	ctr      *corev1.Container
	cfgMap   *corev1.ConfigMap
	cfgKey   string // the kseal.yaml key in cfgMap
	cfgDoc   []byte
	cfg      ksealConfig
	problems []string
}

func (c *checks) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// newChecks finds the Deployment, its kseal container and the config file it
// is started with; without them nothing else can be checked.
func newChecks(t *testing.T, b *bundle, v variant) *checks {
	t.Helper()
	c := &checks{b: b, v: v}
	if !v.helm {
		c.k = loadKustomization(t, b.dir)
	}
	if len(b.deployments) != 1 {
		t.Fatalf("%s: want exactly one Deployment, have %d", b.dir, len(b.deployments))
	}
	for _, d := range b.deployments {
		c.dep = d
	}
	c.pod = &c.dep.Spec.Template.Spec
	if len(c.pod.Containers) != 1 || c.pod.Containers[0].Name != "kseal" {
		t.Fatalf("Deployment %s: want one container named kseal", c.dep.Name)
	}
	c.ctr = &c.pod.Containers[0]
	cfgPath := flagValue(c.ctr.Args, "--config")
	if cfgPath == "" {
		t.Fatalf("container kseal: args %q do not name a --config file", c.ctr.Args)
	}
	src, err := c.resolveFile(cfgPath)
	if err != nil {
		t.Fatalf("--config %s: %v", cfgPath, err)
	}
	if src.configMap == nil {
		t.Fatalf("--config %s: not from a ConfigMap", cfgPath)
	}
	c.cfgMap, c.cfgKey = src.configMap, src.key
	c.cfgDoc = []byte(src.configMap.Data[src.key])
	if err := yaml.Unmarshal(c.cfgDoc, &c.cfg); err != nil {
		t.Fatalf("ConfigMap %s key %s: %v", c.cfgMap.Name, c.cfgKey, err)
	}
	if len(c.cfg.VirtualClusters) == 0 {
		t.Fatalf("ConfigMap %s key %s: no virtualClusters", c.cfgMap.Name, c.cfgKey)
	}
	return c
}

func (c *checks) run() []string {
	if c.v.helm {
		c.releaseNamespace()
	} else {
		c.kustomization()
		c.namespaces()
	}
	c.config()
	c.deployment()
	c.podSecurity()
	c.resources()
	c.ports()
	c.probes()
	c.shutdown()
	c.files()
	c.services()
	c.disruptionBudget()
	c.prometheus()
	return c.problems
}

// flagValue returns the value of --name V or --name=V in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// secretTemplate reports whether a file holds placeholder Secrets that the
// kustomization leaves out (so re-applying it never overwrites real ones).
func secretTemplate(file string) bool { return strings.HasPrefix(file, "secret-") }

func (c *checks) kustomization() {
	k := c.k
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		c.errorf("%s: apiVersion/kind %s/%s", kustomizationFile, k.APIVersion, k.Kind)
	}
	var want []string
	for file, objs := range c.b.files {
		if !secretTemplate(file) {
			want = append(want, file)
			continue
		}
		for _, o := range objs {
			if o.kind != "Secret" {
				c.errorf("%s: a secret-*.yaml file (left out of the kustomization) holds %s", file, o)
			}
		}
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		c.errorf("%s: resources %q, want every manifest but the secret-*.yaml templates: %q", kustomizationFile, got, want)
	}
}

func (c *checks) namespaces() {
	if c.k.Namespace == "" {
		c.errorf("%s: no namespace", kustomizationFile)
	}
	ns, ok := c.b.namespaces[c.k.Namespace]
	if !ok {
		c.errorf("namespace %q is not defined by a Namespace manifest", c.k.Namespace)
	} else if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		c.errorf("Namespace %s: pod-security.kubernetes.io/enforce is %q, want restricted (the pod meets it)", ns.Name, got)
	}
	for _, objs := range c.b.files {
		for _, o := range objs {
			if o.kind != "Namespace" && o.meta.Namespace != c.k.Namespace {
				c.errorf("%s: namespace %q, want %q (so kubectl apply -f puts it where the kustomization does)", o, o.meta.Namespace, c.k.Namespace)
			}
		}
	}
}

// releaseNamespace: a chart creates no Namespace (helm install
// --create-namespace does) and puts every object in the release's.
func (c *checks) releaseNamespace() {
	for _, objs := range c.b.files {
		for _, o := range objs {
			if o.kind == "Namespace" {
				c.errorf("%s: a chart must not create its namespace", o)
			} else if o.meta.Namespace != c.v.namespace {
				c.errorf("%s: namespace %q, want the release's %q", o, o.meta.Namespace, c.v.namespace)
			}
		}
	}
}

// config checks the parts of kseal.yaml that only make sense in a pod.
func (c *checks) config() {
	host, _, err := net.SplitHostPort(c.cfg.Admin.Listen)
	switch {
	case err != nil:
		c.errorf("kseal.yaml admin.listen %q: the probes need the admin listener: %v", c.cfg.Admin.Listen, err)
	case host != "0.0.0.0" && host != "" && host != "::":
		c.errorf("kseal.yaml admin.listen %q: the kubelet probes the pod IP, so listen on 0.0.0.0", c.cfg.Admin.Listen)
	}
	for i, vc := range c.cfg.VirtualClusters {
		g := vc.Gateway
		if g.BindAddress != "" && g.BindAddress != "0.0.0.0" && g.BindAddress != "::" {
			c.errorf("kseal.yaml virtualClusters[%d].gateway.bindAddress %q: the Service reaches the pod IP, so bind 0.0.0.0", i, g.BindAddress)
		}
		if c.v.sni {
			if g.SNI == nil || g.TLS == nil {
				c.errorf("kseal.yaml virtualClusters[%d].gateway: the SNI variant needs gateway.sni and gateway.tls", i)
			}
			continue
		}
		if g.SNI != nil {
			c.errorf("kseal.yaml virtualClusters[%d].gateway.sni: set in the port-per-broker variant", i)
		}
		if g.AdvertisedHost == "" || g.AdvertisedHost == "localhost" || net.ParseIP(g.AdvertisedHost).IsLoopback() {
			c.errorf("kseal.yaml virtualClusters[%d].gateway.advertisedHost %q: clients outside the pod must be told the load balancer's name", i, g.AdvertisedHost)
		}
		if g.BrokerPortCount == 0 || g.BrokerPortStart == 0 {
			c.errorf("kseal.yaml virtualClusters[%d].gateway: set brokerPortStart and brokerPortCount explicitly: the Service lists every broker port", i)
		}
	}
}

func (c *checks) deployment() {
	d := c.dep
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 3 {
		c.errorf("Deployment %s: replicas %v, want at least 3 (the example scales)", d.Name, d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.errorf("Deployment %s: selector %v does not select its own pod template (%v)", d.Name, d.Spec.Selector, err)
	}
	if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		c.errorf("Deployment %s: want a RollingUpdate with maxUnavailable 0, so a rollout never lowers capacity", d.Name)
	}
	img := c.ctr.Image
	if img == "" || strings.HasSuffix(img, ":latest") || !strings.Contains(path.Base(img), ":") && !strings.Contains(img, "@") {
		c.errorf("container kseal: image %q: want an explicit tag or digest, not latest", img)
	}
	if c.ctr.Command != nil {
		c.errorf("container kseal: command overrides the image's ENTRYPOINT")
	}
	if len(c.ctr.Args) == 0 || c.ctr.Args[0] != "run" {
		c.errorf("container kseal: args %q, want run --config FILE", c.ctr.Args)
	}
}

// podSecurity checks the Pod Security Standard "restricted" profile and the
// rest of what the issue asks: non-root, read-only root, no capabilities.
func (c *checks) podSecurity() {
	p, ctr := c.pod, c.ctr
	if p.HostNetwork || p.HostPID || p.HostIPC {
		c.errorf("pod: host namespaces are shared")
	}
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		c.errorf("pod: automountServiceAccountToken must be false: kseal never calls the Kubernetes API")
	}
	if sa, ok := c.b.serviceAccounts[p.ServiceAccountName]; !ok {
		c.errorf("pod: serviceAccountName %q is not defined", p.ServiceAccountName)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		c.errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
	}
	psc := p.SecurityContext
	if psc == nil {
		c.errorf("pod: no securityContext")
		psc = &corev1.PodSecurityContext{}
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		c.errorf("pod: securityContext.runAsNonRoot must be true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		c.errorf("pod: securityContext.runAsUser must be a non-zero uid")
	}
	seccomp := psc.SeccompProfile
	csc := ctr.SecurityContext
	if csc == nil {
		c.errorf("container kseal: no securityContext")
		csc = &corev1.SecurityContext{}
	}
	if csc.SeccompProfile != nil {
		seccomp = csc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost {
		c.errorf("pod: seccompProfile must be RuntimeDefault or Localhost")
	}
	if csc.RunAsUser != nil && *csc.RunAsUser == 0 {
		c.errorf("container kseal: securityContext.runAsUser is 0")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		c.errorf("container kseal: securityContext.allowPrivilegeEscalation must be false")
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		c.errorf("container kseal: securityContext.readOnlyRootFilesystem must be true")
	}
	if csc.Privileged != nil && *csc.Privileged {
		c.errorf("container kseal: privileged")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		c.errorf("container kseal: capabilities must drop ALL and add none")
	}
	for _, vol := range p.Volumes {
		s := vol.VolumeSource
		if s.ConfigMap == nil && s.Secret == nil && s.EmptyDir == nil && s.Projected == nil && s.DownwardAPI == nil && s.PersistentVolumeClaim == nil {
			c.errorf("volume %s: only configMap, secret, emptyDir, projected, downwardAPI and persistentVolumeClaim volumes are allowed here (the restricted profile)", vol.Name)
		}
	}
}

func (c *checks) resources() {
	r := c.ctr.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		if !okReq || !okLim {
			c.errorf("container kseal: resources.requests and resources.limits must both set %s", name)
			continue
		}
		if req.Cmp(lim) > 0 {
			c.errorf("container kseal: %s request %s is above its limit %s", name, req.String(), lim.String())
		}
	}
	lim, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		return
	}
	var soft string
	for _, e := range c.ctr.Env {
		if e.Name == "GOMEMLIMIT" {
			soft = e.Value
		}
	}
	n, err := parseGoMemLimit(soft)
	if err != nil {
		c.errorf("container kseal: GOMEMLIMIT %q: %v (set it below the memory limit so the GC acts before the OOM killer)", soft, err)
	} else if n >= lim.Value() {
		c.errorf("container kseal: GOMEMLIMIT %s is not below the memory limit %s", soft, lim.String())
	}
}

// parseGoMemLimit reads GOMEMLIMIT's syntax: bytes with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mul = v, u.mul
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive size")
	}
	return n * mul, nil
}

// adminPort is admin.listen's port.
func (c *checks) adminPort() int32 {
	_, p, err := net.SplitHostPort(c.cfg.Admin.Listen)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return int32(n)
}

// kafkaPorts are the ports kseal listens on for clients, from its config.
func (c *checks) kafkaPorts() []int32 {
	var ports []int32
	for _, vc := range c.cfg.VirtualClusters {
		g := vc.Gateway
		ports = append(ports, g.BootstrapPort)
		if g.SNI != nil {
			continue
		}
		for n := range g.BrokerPortCount {
			ports = append(ports, g.BrokerPortStart+n)
		}
	}
	slices.Sort(ports)
	return ports
}

func (c *checks) ports() {
	want := append(c.kafkaPorts(), c.adminPort())
	slices.Sort(want)
	var got []int32
	names := map[string]bool{}
	for _, p := range c.ctr.Ports {
		got = append(got, p.ContainerPort)
		if errs := validation.IsValidPortName(p.Name); p.Name == "" || len(errs) > 0 {
			c.errorf("container port %d: name %q is not a valid port name %v", p.ContainerPort, p.Name, errs)
		}
		if names[p.Name] {
			c.errorf("container port name %q is used twice", p.Name)
		}
		names[p.Name] = true
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			c.errorf("container port %s: protocol %s, Kafka is TCP", p.Name, p.Protocol)
		}
		if p.HostPort != 0 {
			c.errorf("container port %s: hostPort is not allowed", p.Name)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		c.errorf("container ports %v, want exactly kseal.yaml's listeners %v (bootstrap, broker ports, admin)", got, want)
	}
}

// containerPort resolves a probe's or Service's target port to a container
// port; nil when no container port matches.
func (c *checks) containerPort(p intstr.IntOrString) *corev1.ContainerPort {
	for i := range c.ctr.Ports {
		cp := &c.ctr.Ports[i]
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp
		}
	}
	return nil
}

func (c *checks) probes() {
	check := func(name string, pr *corev1.Probe, wantPath string) {
		if pr == nil || pr.HTTPGet == nil {
			c.errorf("container kseal: %s must be an httpGet probe of %s", name, wantPath)
			return
		}
		if pr.HTTPGet.Path != wantPath {
			c.errorf("container kseal: %s path %q, want %s", name, pr.HTTPGet.Path, wantPath)
		}
		if cp := c.containerPort(pr.HTTPGet.Port); cp == nil || cp.ContainerPort != c.adminPort() {
			c.errorf("container kseal: %s port %s is not the admin port %d (admin.listen)", name, pr.HTTPGet.Port.String(), c.adminPort())
		}
		if pr.TimeoutSeconds == 0 || pr.PeriodSeconds == 0 {
			c.errorf("container kseal: %s: set periodSeconds and timeoutSeconds", name)
		}
	}
	// Liveness must not depend on Kafka: /readyz fails while the cluster is
	// unreachable, and restarting kseal would not help.
	check("readinessProbe", c.ctr.ReadinessProbe, "/readyz")
	check("livenessProbe", c.ctr.LivenessProbe, "/healthz")
}

// shutdown: the Service must stop sending before kseal stops accepting
// (preStop), and kseal must have drainTimeout to finish before SIGKILL.
func (c *checks) shutdown() {
	lc := c.ctr.Lifecycle
	var sleep int64
	switch {
	case lc == nil || lc.PreStop == nil:
		c.errorf("container kseal: no preStop hook: the load balancer would still send connections to a pod that no longer accepts them")
	case lc.PreStop.Exec != nil:
		c.errorf("container kseal: preStop exec: the distroless image has no shell or sleep binary; use the sleep action")
	case lc.PreStop.Sleep == nil || lc.PreStop.Sleep.Seconds <= 0:
		c.errorf("container kseal: preStop must sleep a few seconds")
	default:
		sleep = lc.PreStop.Sleep.Seconds
	}
	drain := 30 * time.Second // kseal's default
	if c.cfg.DrainTimeout != "" {
		d, err := time.ParseDuration(c.cfg.DrainTimeout)
		if err != nil {
			c.errorf("kseal.yaml drainTimeout %q: %v", c.cfg.DrainTimeout, err)
		}
		drain = d
	}
	grace := c.pod.TerminationGracePeriodSeconds
	need := sleep + int64(drain.Seconds())
	if grace == nil || *grace <= need {
		c.errorf("pod: terminationGracePeriodSeconds %v must exceed preStop sleep (%ds) + drainTimeout (%s) = %ds", grace, sleep, drain, need)
	}
}

// fileSource is where a path inside the container comes from.
type fileSource struct {
	configMap *corev1.ConfigMap
	secret    *corev1.Secret
	claim     string // a file on this PersistentVolumeClaim (key is its path there)
	key       string
}

// resolveFile finds the ConfigMap or Secret key that a path in the
// container is, through the container's mounts and the pod's volumes.
func (c *checks) resolveFile(p string) (fileSource, error) {
	for _, m := range c.ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if m.SubPath != "" {
			return fileSource{}, fmt.Errorf("mounted with subPath %q: the kubelet never updates it", m.SubPath)
		}
		var vol *corev1.Volume
		for i := range c.pod.Volumes {
			if c.pod.Volumes[i].Name == m.Name {
				vol = &c.pod.Volumes[i]
			}
		}
		if vol == nil {
			return fileSource{}, fmt.Errorf("volume %q of the mount at %s is not defined", m.Name, m.MountPath)
		}
		var items []corev1.KeyToPath
		var src fileSource
		var has func(string) bool
		switch {
		case vol.ConfigMap != nil:
			cm, ok := c.b.configMaps[vol.ConfigMap.Name]
			if !ok {
				return fileSource{}, fmt.Errorf("ConfigMap %q of volume %s is not defined", vol.ConfigMap.Name, vol.Name)
			}
			items, src.configMap = vol.ConfigMap.Items, cm
			has = func(k string) bool { _, ok := cm.Data[k]; _, okb := cm.BinaryData[k]; return ok || okb }
		case vol.Secret != nil:
			s, ok := c.b.secrets[vol.Secret.SecretName]
			items = vol.Secret.Items
			switch {
			case ok:
				has = func(k string) bool { _, ok := s.Data[k]; _, oks := s.StringData[k]; return ok || oks }
			case c.v.helm && len(items) > 0 && (vol.Secret.Optional == nil || !*vol.Secret.Optional):
				// The chart references Secrets the operator creates; the
				// keys it needs are the volume's items, and the pod does not
				// start until the Secret holds them all.
				s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: vol.Secret.SecretName}}
				has = func(k string) bool {
					return slices.ContainsFunc(items, func(it corev1.KeyToPath) bool { return it.Key == k })
				}
			default:
				return fileSource{}, fmt.Errorf("Secret %q of volume %s is not defined", vol.Secret.SecretName, vol.Name)
			}
			src.secret = s
		case vol.PersistentVolumeClaim != nil:
			claim := vol.PersistentVolumeClaim.ClaimName
			if !vol.PersistentVolumeClaim.ReadOnly {
				return fileSource{}, fmt.Errorf("volume %s: claim %s is not mounted readOnly", vol.Name, claim)
			}
			return fileSource{claim: claim, key: rel}, nil
		default:
			return fileSource{}, fmt.Errorf("volume %s is neither a ConfigMap nor a Secret", vol.Name)
		}
		src.key = rel
		if len(items) > 0 {
			src.key = ""
			for _, it := range items {
				if it.Path == rel {
					src.key = it.Key
				}
			}
		}
		if src.key == "" || !has(src.key) {
			return fileSource{}, fmt.Errorf("volume %s (mounted at %s) has no key for %s", vol.Name, m.MountPath, rel)
		}
		return src, nil
	}
	return fileSource{}, fmt.Errorf("no volume is mounted there")
}

// files: every file kseal.yaml names is mounted, from a Secret unless it is
// the config itself, read-only, and not readable by others.
func (c *checks) files() {
	var tree any
	if err := yaml.Unmarshal(c.cfgDoc, &tree); err != nil {
		c.errorf("kseal.yaml: %v", err)
		return
	}
	paths := map[string]string{}
	walkFiles("", tree, paths)
	if len(paths) == 0 && c.v.sni {
		c.errorf("kseal.yaml names no file: the SNI variant needs its certificate")
	}
	for key, p := range paths {
		src, err := c.resolveFile(p)
		if err != nil {
			c.errorf("kseal.yaml %s %s: %v", key, p, err)
			continue
		}
		switch {
		case src.claim != "":
			// Only the local KMS's store may live on a volume: it is sealed
			// under the master key, which must come from a Secret.
			if !strings.HasSuffix(key, ".keyStore") {
				c.errorf("kseal.yaml %s %s: on volume claim %s; credentials and keys belong in a Secret", key, p, src.claim)
			}
		case src.secret == nil:
			c.errorf("kseal.yaml %s %s: comes from a ConfigMap; credentials and keys belong in a Secret", key, p)
		}
	}
	for _, m := range c.ctr.VolumeMounts {
		if !m.ReadOnly {
			c.errorf("volume mount %s: not readOnly", m.Name)
		}
	}
	for _, vol := range c.pod.Volumes {
		if s := vol.Secret; s != nil && (s.DefaultMode == nil || *s.DefaultMode&0o007 != 0) {
			c.errorf("volume %s: Secret files must not be readable by others: set defaultMode (e.g. 0440 with fsGroup)", vol.Name)
		}
	}
}

// walkFiles collects the string values of keys that name files (…File and
// the local KMS's keyStore) with their dotted key path.
func walkFiles(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			key := strings.TrimPrefix(prefix+"."+k, ".")
			if s, ok := x.(string); ok && (strings.HasSuffix(k, "File") || k == "keyStore") {
				out[key] = s
				continue
			}
			walkFiles(key, x, out)
		}
	case []any:
		for i, x := range v {
			walkFiles(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	}
}

// services: each selects the pods, targets existing container ports, and
// together they expose every container port; Kafka ports on a load
// balancer at the numbers kseal advertises, the admin port never.
func (c *checks) services() {
	podLabels := labels.Set(c.dep.Spec.Template.Labels)
	exposed := map[int32][]string{} // container port -> "service/type/port"
	for _, svc := range c.b.services {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			c.errorf("Service %s: selector %v does not select the kseal pods", svc.Name, svc.Spec.Selector)
		}
		for _, sp := range svc.Spec.Ports {
			if errs := validation.IsDNS1123Label(sp.Name); len(errs) > 0 {
				c.errorf("Service %s port %d: name %q: %v", svc.Name, sp.Port, sp.Name, errs)
			}
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				c.errorf("Service %s port %s: protocol %s, Kafka is TCP", svc.Name, sp.Name, sp.Protocol)
			}
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			cp := c.containerPort(target)
			if cp == nil {
				c.errorf("Service %s port %s: targetPort %s is no container port", svc.Name, sp.Name, target.String())
				continue
			}
			exposed[cp.ContainerPort] = append(exposed[cp.ContainerPort], fmt.Sprintf("%s/%s/%d", svc.Name, svc.Spec.Type, sp.Port))
			if cp.ContainerPort == c.adminPort() && (svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort) {
				c.errorf("Service %s: exposes the admin port outside the cluster", svc.Name)
			}
		}
	}
	for _, p := range c.ctr.Ports {
		if len(exposed[p.ContainerPort]) == 0 {
			c.errorf("container port %s (%d) is not exposed by any Service", p.Name, p.ContainerPort)
		}
	}
	for _, vc := range c.cfg.VirtualClusters {
		g := vc.Gateway
		if g.SNI != nil {
			c.wantOnLoadBalancer(exposed, g.BootstrapPort, g.SNI.AdvertisedPort, "gateway.sni.advertisedPort")
			continue
		}
		// kseal tells clients the numbers themselves, so the load balancer
		// must listen on exactly those.
		c.wantOnLoadBalancer(exposed, g.BootstrapPort, g.BootstrapPort, "gateway.bootstrapPort")
		for n := range g.BrokerPortCount {
			p := g.BrokerPortStart + n
			c.wantOnLoadBalancer(exposed, p, p, "the advertised broker port brokerPortStart+"+strconv.Itoa(int(n)))
		}
	}
}

func (c *checks) wantOnLoadBalancer(exposed map[int32][]string, containerPort, port int32, what string) {
	for _, e := range exposed[containerPort] {
		parts := strings.Split(e, "/")
		if parts[1] == string(corev1.ServiceTypeLoadBalancer) && parts[2] == strconv.Itoa(int(port)) {
			return
		}
	}
	c.errorf("container port %d: no LoadBalancer Service port %d (%s); it is exposed as %v", containerPort, port, what, exposed[containerPort])
}

func (c *checks) disruptionBudget() {
	if len(c.b.pdbs) != 1 {
		c.errorf("want one PodDisruptionBudget, have %d", len(c.b.pdbs))
		return
	}
	replicas := 1
	if c.dep.Spec.Replicas != nil {
		replicas = int(*c.dep.Spec.Replicas)
	}
	for _, pdb := range c.b.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(c.dep.Spec.Template.Labels)) {
			c.errorf("PodDisruptionBudget %s: selector does not select the kseal pods", pdb.Name)
		}
		// At least one pod may go (or node drains block), and not all.
		var down int
		switch {
		case pdb.Spec.MaxUnavailable != nil:
			down, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, true)
		case pdb.Spec.MinAvailable != nil:
			var up int
			up, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true)
			down = replicas - up
		default:
			c.errorf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", pdb.Name)
			continue
		}
		if err != nil || down < 1 || down >= replicas {
			c.errorf("PodDisruptionBudget %s: allows %d of %d replicas down (%v); want at least 1 and fewer than all", pdb.Name, down, replicas, err)
		}
	}
}

func (c *checks) prometheus() {
	a := c.dep.Spec.Template.Annotations
	if len(c.b.serviceMonitors) > 0 {
		c.serviceMonitors()
		if a["prometheus.io/scrape"] == "" {
			return // scraped through the ServiceMonitor alone
		}
	}
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(c.adminPort())) {
		c.errorf("pod template: prometheus.io/scrape, /path, /port annotations %q %q %q, want true /metrics %d",
			a["prometheus.io/scrape"], a["prometheus.io/path"], a["prometheus.io/port"], c.adminPort())
	}
}

// serviceMonitors: each selects a Service that exposes the admin port, by
// that port's name, on /metrics.
func (c *checks) serviceMonitors() {
	for _, sm := range c.b.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			c.errorf("ServiceMonitor %s: selector %v (%v)", sm.Name, sm.Spec.Selector, err)
			continue
		}
		if len(sm.Spec.Endpoints) == 0 {
			c.errorf("ServiceMonitor %s: no endpoints", sm.Name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Path != "/metrics" {
				c.errorf("ServiceMonitor %s: path %q, want /metrics", sm.Name, ep.Path)
			}
			found := false
			for _, svc := range c.b.services {
				if !sel.Matches(labels.Set(svc.Labels)) {
					continue
				}
				for _, sp := range svc.Spec.Ports {
					if sp.Name != ep.Port {
						continue
					}
					if cp := c.containerPort(sp.TargetPort); cp != nil && cp.ContainerPort == c.adminPort() {
						found = true
					} else {
						c.errorf("ServiceMonitor %s: port %s of Service %s is not the admin port %d", sm.Name, ep.Port, svc.Name, c.adminPort())
					}
				}
			}
			if !found {
				c.errorf("ServiceMonitor %s: no Service it selects has an admin port named %q", sm.Name, ep.Port)
			}
		}
	}
}
