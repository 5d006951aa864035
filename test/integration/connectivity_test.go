//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/testenv"
)

// TestConnectivity: TLS (mutual, both towards clients and towards the
// brokers), SNI routing on one port, and SASL/SCRAM passed through to the
// broker, each with franz-go, kcat and the Java client through kseal.
// TLS and SASL run against a separate one-broker cluster with SSL and
// SASL_PLAINTEXT listeners; SNI runs in front of the shared cluster.
func TestConnectivity(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	pki := e2eNewPKI(t)
	t.Run("sni", func(t *testing.T) {
		t.Parallel()
		testSNI(t, pki)
	})
	b := e2eStartSecureBroker(t, pki)
	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		testTLS(t, pki, b)
	})
	t.Run("sasl", func(t *testing.T) {
		t.Parallel()
		testSASL(t, b)
	})
	t.Run("upstream-sasl", func(t *testing.T) {
		t.Parallel()
		testUpstreamSASL(t, b)
	})
}

// e2ePKI is a test CA with a server certificate (for kseal and the broker:
// 127.0.0.1, localhost and *.kafka.test) and a client certificate, written
// as PEM files the three clients, kseal and Kafka read.
type e2ePKI struct {
	dir    string
	pool   *x509.CertPool
	client tls.Certificate
}

func (p *e2ePKI) path(name string) string { return filepath.Join(p.dir, name) }

func e2eNewPKI(t *testing.T) *e2ePKI {
	t.Helper()
	p := &e2ePKI{dir: e2eWorkDir(t), pool: x509.NewCertPool()}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	sign := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(name string, blocks ...*pem.Block) {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		if err := os.WriteFile(p.path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyBlock := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	certBlock := func(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

	caKey := newKey()
	ca := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "kseal e2e CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, caKey, nil, nil)
	p.pool.AddCert(ca)
	write("ca.pem", certBlock(ca))

	serverKey := newKey()
	server := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "kseal e2e server"},
		DNSNames:    []string{"localhost", "*.kafka.test", "bootstrap.kafka.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		serverKey, ca, caKey)
	write("server.pem", certBlock(server), certBlock(ca))
	write("server.key", keyBlock(serverKey))
	write("server-keystore.pem", keyBlock(serverKey), certBlock(server), certBlock(ca)) // Kafka's PEM keystore

	clientKey := newKey()
	client := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "kseal e2e client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		clientKey, ca, caKey)
	write("client.pem", certBlock(client), certBlock(ca))
	write("client.key", keyBlock(clientKey))
	write("client-keystore.pem", keyBlock(clientKey), certBlock(client), certBlock(ca))
	var err error
	if p.client, err = tls.LoadX509KeyPair(p.path("client.pem"), p.path("client.key")); err != nil {
		t.Fatal(err)
	}
	return p
}

// e2eSecureBroker is a one-node Kafka (broker and controller) with an
// INTERNAL plaintext listener for set-up and inter-broker traffic, an SSL
// listener requiring client certificates, and a SASL_PLAINTEXT listener
// with a SCRAM-SHA-512 user (and the same user for PLAIN, see testSASL). scripts/kafka.sh takes no extra broker
// settings, so it is started here from the same cached jars.
type e2eSecureBroker struct {
	internal, ssl, sasl string
}

const (
	e2eSASLUser     = "alice"
	e2eSASLPassword = "alice-secret"
)

func e2eStartSecureBroker(t *testing.T, pki *e2ePKI) *e2eSecureBroker {
	t.Helper()
	dir := e2eWorkDir(t)
	ports := make([]int, 4)
	for i := range ports {
		for {
			ports[i] = e2eFreePort(t)
			dup := false
			for _, q := range ports[:i] {
				dup = dup || q == ports[i]
			}
			if !dup {
				break
			}
		}
	}
	b := &e2eSecureBroker{
		internal: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		ssl:      fmt.Sprintf("127.0.0.1:%d", ports[1]),
		sasl:     fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	props := fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[4]d
listeners=INTERNAL://%[1]s,SSL://%[2]s,SASL_PLAINTEXT://%[3]s,CONTROLLER://127.0.0.1:%[4]d
advertised.listeners=INTERNAL://%[1]s,SSL://%[2]s,SASL_PLAINTEXT://%[3]s
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
log.dirs=%[5]s
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
ssl.keystore.type=PEM
ssl.keystore.location=%[6]s
ssl.truststore.type=PEM
ssl.truststore.location=%[7]s
ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%[8]s="%[9]s";
`, b.internal, b.ssl, b.sasl, ports[3], filepath.Join(dir, "data"), pki.path("server-keystore.pem"), pki.path("ca.pem"),
		e2eSASLUser, e2eSASLPassword)
	propsPath := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(propsPath, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	jvm := []string{"-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	// A first character '-' or '_' (top bits 111110/111111) would be read
	// as an option by kafka-storage's argument parser (as Kafka's own
	// random-uuid avoids): clear the top bit.
	raw[0] &= 0x7f
	cid := base64.RawURLEncoding.EncodeToString(raw[:]) // the form of a Kafka cluster id
	// The SCRAM user goes into the cluster metadata at format time.
	format := exec.Command("java", slices.Concat(jvm, []string{
		"-Dlog4j2.configurationFile=" + filepath.Join(cluster.Home, "config", "tools-log4j2.properties"),
		"-cp", cluster.Libs + "/*", "kafka.tools.StorageTool", "format", "-t", cid, "-c", propsPath,
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", e2eSASLUser, e2eSASLPassword)})...)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("format the secure broker's storage: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("java", slices.Concat(jvm, []string{
		"-Dlog4j2.configurationFile=" + filepath.Join(cluster.Home, "config", "broker-log4j2.properties"),
		"-cp", cluster.Libs + "/*", "kafka.Kafka", propsPath})...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test process
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("secure broker log (tail):\n%s", tailLines(string(out), 40))
		}
	})
	// Ready once its metadata lists it: the broker registered with its
	// own controller and is unfenced.
	adm := kadm.NewClient(testenv.Kgo(t, []string{b.internal}))
	deadline := time.Now().Add(120 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := adm.BrokerMetadata(ctx)
		cancel()
		if err == nil && len(md.Brokers) == 1 {
			return b
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("secure broker exited during startup:\n%s", tailLines(string(out), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("secure broker not ready after 120s: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// topic creates a one-partition topic on the secure broker.
func (b *e2eSecureBroker) topic(t *testing.T, prefix string) string {
	t.Helper()
	name := uniq("it-" + prefix)
	adm := kadm.NewClient(testenv.Kgo(t, []string{b.internal}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, 1, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return name
}

// e2eConfig renders a kseal config with one virtual cluster, letting the
// test add TLS and SNI settings that KsealConfig's extra cannot (they live
// inside gateway and upstream).
func e2eConfig(gw testenv.Gateway, upstream, upstreamExtra, gatewayExtra string) string {
	return fmt.Sprintf(`log: {level: info, format: text}
drainTimeout: 5s
virtualClusters:
  - name: it
    upstream:
      bootstrapServers: [%q]
%s    gateway:
      bindAddress: %s
      advertisedHost: %s
      bootstrapPort: %d
      brokerPortStart: %d
      brokerPortCount: %d
%s`, upstream, upstreamExtra, gw.Host, gw.Host, gw.BootstrapPort, gw.BrokerPortStart, gw.BrokerPortCount, gatewayExtra)
}

// e2eConnRecords produces n records with franz-go (opts give it TLS or SASL)
// and returns their values.
func e2eConnRecords(topic, src string, n int) []testenv.Record {
	out := make([]testenv.Record, n)
	nonce := uniq("")
	for i := range out {
		out[i] = testenv.Record{Topic: topic, Partition: -1, Key: fmt.Sprintf("%s-%d", src, i),
			Value: fmt.Sprintf("%s %d%s", src, i, nonce)}
	}
	return out
}

// testTLS: kseal serves TLS to clients, requires their certificates
// (clientAuth: require), and speaks TLS with a client certificate to the
// broker's SSL listener (which requires one too). franz-go, kcat and Java
// produce and consume over it; a client without a certificate is refused.
func testTLS(t *testing.T, pki *e2ePKI, b *e2eSecureBroker) {
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e2eConfig(gw, b.ssl,
		fmt.Sprintf("      tls: {enabled: true, caFile: %q, certFile: %q, keyFile: %q}\n",
			pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key")),
		fmt.Sprintf("      tls: {certFile: %q, keyFile: %q, clientAuth: require, clientCaFile: %q}\n",
			pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem")))
	p := e2eStartKseal(t, cfg)
	topic := b.topic(t, "tls")

	tlsCfg := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}
	franzRecs, kcatRecs, javaRecs := e2eConnRecords(topic, "franz", 5), e2eConnRecords(topic, "kcat", 5), e2eConnRecords(topic, "java", 5)
	testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, kgo.DialTLSConfig(tlsCfg)), franzRecs)
	kcatTLS := []string{"-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + pki.path("ca.pem"),
		"-X", "ssl.certificate.location=" + pki.path("client.pem"), "-X", "ssl.key.location=" + pki.path("client.key")}
	testenv.KcatProduce(t, p.Bootstrap, topic, kcatRecs, kcatTLS...)
	javaProps := filepath.Join(pki.dir, "java-tls.properties")
	if err := os.WriteFile(javaProps, []byte(fmt.Sprintf("security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n"+
		"ssl.keystore.type=PEM\nssl.keystore.location=%s\n", pki.path("ca.pem"), pki.path("client-keystore.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.JavaProduce(t, cluster, p.Bootstrap, topic, javaRecs, "--command-config", javaProps)
	want := append(append(append([]testenv.Record{}, franzRecs...), kcatRecs...), javaRecs...)

	// Stored on the broker (read on its plaintext listener).
	var direct []testenv.Record
	for _, r := range e2eMustConsume(t, "direct", b.internal, len(want), []string{topic}) {
		direct = append(direct, testenv.FromKgo(r))
	}
	assertSameRecords(t, "stored", direct, want)
	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go over TLS", p.Bootstrap, len(want), []string{topic}, kgo.DialTLSConfig(tlsCfg)) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	assertSameRecords(t, "franz-go over TLS", byFranz, want)
	assertSameRecords(t, "kcat over TLS", testenv.KcatConsume(t, p.Bootstrap, topic, kcatTLS...), want)
	assertSameRecords(t, "java over TLS", testenv.JavaConsume(t, cluster, p.Bootstrap, topic, len(want), "--command-config", javaProps), want)

	// No client certificate: the handshake fails.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	noCert := testenv.Kgo(t, []string{p.Bootstrap}, kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool}))
	if err := noCert.Ping(ctx); err == nil {
		t.Error("a client without a certificate was served")
	}
	// Plaintext on the TLS port gets nowhere either.
	plain := testenv.Kgo(t, []string{p.Bootstrap})
	if err := plain.Ping(ctx); err == nil {
		t.Error("a plaintext client was served on the TLS port")
	}
}

// e2eSNIDomain is the made-up domain of the SNI test: the clients map its
// names to 127.0.0.1 themselves.
const e2eSNIDomain = "kafka.test"

// testSNI: one kseal port serves the whole 3-broker cluster; clients are
// told broker-N.kafka.test on that port and kseal routes each TLS
// connection by its server name. franz-go maps the names with its own
// dialer, Java with a hosts file (jdk.net.hosts.file), and kcat in a mount
// namespace whose /etc/hosts has them (skipped where unshare is not
// allowed: librdkafka has no setting to map names to addresses).
func testSNI(t *testing.T, pki *e2ePKI) {
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	bootstrapHost := "bootstrap." + e2eSNIDomain
	cfg := e2eConfig(gw, cluster.Bootstrap[0], "",
		fmt.Sprintf("      tls: {certFile: %q, keyFile: %q}\n      sni: {bootstrapHost: %s, brokerHostPattern: 'broker-$(nodeId).%s'}\n",
			pki.path("server.pem"), pki.path("server.key"), bootstrapHost, e2eSNIDomain))
	p := e2eStartKseal(t, cfg)
	port := strconv.Itoa(gw.BootstrapPort)
	bootstrap := net.JoinHostPort(bootstrapHost, port)
	topic := newTopic(t, "sni", nil) // leaders on all three brokers

	var mu sync.Mutex
	dialed := map[string]bool{}
	dialer := kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		h, prt, err := net.SplitHostPort(host)
		if err != nil || !strings.HasSuffix(h, "."+e2eSNIDomain) || prt != port {
			return nil, fmt.Errorf("franz-go was told to dial %q, not a kseal SNI name on port %s", host, port)
		}
		mu.Lock()
		dialed[h] = true
		mu.Unlock()
		d := &tls.Dialer{Config: &tls.Config{RootCAs: pki.pool, ServerName: h}}
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", prt))
	})
	franz := func(opts ...kgo.Opt) *kgo.Client {
		return testenv.Kgo(t, []string{bootstrap}, append([]kgo.Opt{dialer}, opts...)...)
	}

	adm := kadm.NewClient(franz())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("metadata over SNI: %v", err)
	}
	if len(md.Brokers) != len(cluster.Brokers) {
		t.Errorf("metadata lists %d brokers, want %d", len(md.Brokers), len(cluster.Brokers))
	}
	for _, br := range md.Brokers {
		if want := fmt.Sprintf("broker-%d.%s", br.NodeID, e2eSNIDomain); br.Host != want || br.Port != int32(gw.BootstrapPort) {
			t.Errorf("broker %d advertised as %s:%d, want %s:%d", br.NodeID, br.Host, br.Port, want, gw.BootstrapPort)
		}
	}

	franzRecs, kcatRecs := makeRecords(topic, "franz-sni", 12, roundRobin, nil), makeRecords(topic, "kcat-sni", 6, nil, nil)
	testenv.KgoProduce(t, franz(kgo.RecordPartitioner(kgo.ManualPartitioner())), franzRecs)
	want := append([]testenv.Record{}, franzRecs...)

	hosts := filepath.Join(e2eWorkDir(t), "hosts")
	var hb strings.Builder
	hb.WriteString("127.0.0.1 localhost " + bootstrapHost)
	for id := range cluster.Brokers {
		fmt.Fprintf(&hb, " broker-%d.%s", id, e2eSNIDomain)
	}
	hb.WriteString("\n")
	if err := os.WriteFile(hosts, []byte(hb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// kcat in a private mount namespace with our hosts file over
	// /etc/hosts (needs CAP_SYS_ADMIN; the machine's file is untouched).
	kcatSNI := func(stdin string, args ...string) (string, string, error) {
		script := `mount --bind "$0" /etc/hosts && exec kcat "$@"`
		return e2eRun(t, 60*time.Second, stdin, nil, "unshare", append([]string{"--mount", "sh", "-c", script, hosts}, args...)...)
	}
	kcatTLS := []string{"-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + pki.path("ca.pem")}
	kcatOK := true
	if _, errOut, err := kcatSNI("", append([]string{"-L", "-b", bootstrap, "-m", "10"}, kcatTLS...)...); err != nil {
		if strings.Contains(errOut, "unshare") || strings.Contains(errOut, "mount") {
			t.Logf("kcat over SNI skipped: cannot give kcat its own /etc/hosts here: %s", strings.TrimSpace(errOut))
			kcatOK = false
		} else {
			t.Fatalf("kcat -L over SNI: %v\n%s", err, errOut)
		}
	}
	if kcatOK {
		var in strings.Builder
		for _, r := range kcatRecs {
			in.WriteString(r.Key + "\t" + r.Value + "\n")
		}
		if _, errOut, err := kcatSNI(in.String(), append([]string{"-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all"}, kcatTLS...)...); err != nil {
			t.Fatalf("kcat produce over SNI: %v\n%s", err, errOut)
		}
		want = append(want, kcatRecs...)
	}

	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go over SNI", bootstrap, len(want), []string{topic}, dialer) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	assertSameRecords(t, "franz-go over SNI", byFranz, want)
	mu.Lock()
	for id := range cluster.Brokers {
		if h := fmt.Sprintf("broker-%d.%s", id, e2eSNIDomain); !dialed[h] {
			t.Errorf("franz-go never dialed %s", h)
		}
	}
	mu.Unlock()
	if kcatOK {
		out, errOut, err := kcatSNI("", append([]string{"-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q"}, kcatTLS...)...)
		if err != nil {
			t.Fatalf("kcat consume over SNI: %v\n%s", err, errOut)
		}
		var got []testenv.Record
		for _, r := range e2eParseKcat(t, out) {
			got = append(got, testenv.Record{Topic: topic, Partition: r.Partition, Offset: r.Offset, Key: *r.Key, Value: *r.Value})
		}
		assertSameRecords(t, "kcat over SNI", got, want)
	}
	javaProps := filepath.Join(filepath.Dir(hosts), "java-sni.properties")
	if err := os.WriteFile(javaProps, []byte(fmt.Sprintf("security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n",
		pki.path("ca.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var byJava []testenv.Record
	for _, r := range e2eJavaConsume(t, []string{"-Djdk.net.hosts.file=" + hosts}, bootstrap, topic, len(want), "--command-config", javaProps) {
		byJava = append(byJava, testenv.Record{Topic: topic, Key: *r.Key, Value: *r.Value})
	}
	assertSameRecords(t, "java over SNI", byJava, want)

	// A server name that is neither the bootstrap nor a broker is refused.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", port),
		&tls.Config{RootCAs: pki.pool, ServerName: "nobody." + e2eSNIDomain})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil // still open: not refused
		}
	}
	if err == nil {
		t.Error("a connection for an unknown server name was served")
	}
	p.waitLog(t, "nobody."+e2eSNIDomain, 1, 10*time.Second)
}

// testSASL: SASL/SCRAM-SHA-512 passes through kseal to a SASL_PLAINTEXT
// listener: the right credentials work in franz-go, kcat and Java, wrong
// ones fail in each with the broker's authentication error (kseal holds no
// credentials: the broker decides).
//
// librdkafka before 2.6.1 (Debian's kcat bundles 2.0.2) builds a SCRAM
// final message that Kafka 4.x brokers reject even with the right password
// (librdkafka#4895, kcat#462). With such a kcat the test checks that kseal
// passes its SCRAM exchange through unchanged (the same answer as from the
// broker directly) and runs kcat's positive case with SASL/PLAIN.
func testSASL(t *testing.T, b *e2eSecureBroker) {
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	p := e2eStartKseal(t, e2eConfig(gw, b.sasl, "", ""))
	topic := b.topic(t, "sasl")
	auth := func(pass string) kgo.Opt {
		return kgo.SASL(scram.Auth{User: e2eSASLUser, Pass: pass}.AsSha512Mechanism())
	}
	kcatSASL := func(mech, pass string) []string {
		return []string{"-X", "security.protocol=sasl_plaintext", "-X", "sasl.mechanisms=" + mech,
			"-X", "sasl.username=" + e2eSASLUser, "-X", "sasl.password=" + pass}
	}
	kcatMech := "SCRAM-SHA-512"
	if !e2eKcatSCRAMWorks(t) {
		kcatMech = "PLAIN"
		t.Logf("kcat's librdkafka predates 2.6.1: its SCRAM is checked for passthrough only, its records go with SASL/PLAIN")
		// Same answer through kseal as from the broker itself. (-m 3:
		// kcat -L keeps retrying the login until its metadata timeout.)
		for _, target := range []string{b.sasl, p.Bootstrap} {
			_, errOut, err := e2eKcat(t, 30*time.Second, "", append([]string{"-L", "-b", target, "-t", topic, "-m", "3"},
				kcatSASL("SCRAM-SHA-512", e2eSASLPassword)...)...)
			if err == nil || !strings.Contains(errOut, "SASL authentication error: Authentication failed during authentication due to invalid credentials") {
				t.Errorf("kcat SCRAM at %s: exit %v; want the broker's refusal of librdkafka's final message\n%s", target, err, errOut)
			}
		}
	}
	javaProps := func(pass string) string {
		path := filepath.Join(e2eWorkDir(t), "sasl.properties")
		if err := os.WriteFile(path, []byte(fmt.Sprintf("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"+
			"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"%s\" password=\"%s\";\n",
			e2eSASLUser, pass)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	franzRecs, kcatRecs := e2eConnRecords(topic, "franz", 5), e2eConnRecords(topic, "kcat", 5)
	testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, auth(e2eSASLPassword)), franzRecs)
	testenv.KcatProduce(t, p.Bootstrap, topic, kcatRecs, kcatSASL(kcatMech, e2eSASLPassword)...)
	want := append(append([]testenv.Record{}, franzRecs...), kcatRecs...)
	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go with SCRAM", p.Bootstrap, len(want), []string{topic}, auth(e2eSASLPassword)) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	assertSameRecords(t, "franz-go with SCRAM", byFranz, want)
	assertSameRecords(t, "kcat with "+kcatMech, testenv.KcatConsume(t, p.Bootstrap, topic, kcatSASL(kcatMech, e2eSASLPassword)...), want)
	assertSameRecords(t, "java with SCRAM",
		testenv.JavaConsume(t, cluster, p.Bootstrap, topic, len(want), "--command-config", javaProps(e2eSASLPassword)), want)
	// librdkafka with SCRAM after all: confluent-kafka's wheel bundles
	// librdkafka 2.6.1, whose SCRAM Kafka 4.x accepts.
	rdSCRAM := map[string]string{"security.protocol": "sasl_plaintext", "sasl.mechanisms": "SCRAM-SHA-512",
		"sasl.username": e2eSASLUser, "sasl.password": e2eSASLPassword}
	rdRecs := e2eConnRecords(topic, "rdkafka", 5)
	testenv.RdkafkaProduce(t, p.Bootstrap, topic, rdRecs, rdSCRAM)
	want = append(want, rdRecs...)
	assertSameRecords(t, "librdkafka 2.6.1 (confluent-kafka) with SCRAM",
		testenv.RdkafkaConsume(t, p.Bootstrap, topic, len(want), rdSCRAM), want)

	// Wrong password: the broker's SASL_AUTHENTICATION_FAILED (58)
	// reaches every client.
	const wrong = "not-" + e2eSASLPassword
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// (A produce would retry until its context ends; a request on one
	// connection returns the authentication error itself.)
	err = testenv.Kgo(t, []string{p.Bootstrap}, auth(wrong)).Ping(ctx)
	if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "invalid credentials") {
		t.Errorf("franz-go with a wrong password: %v, want SASL_AUTHENTICATION_FAILED with the broker's message", err)
	}
	brokerSays := map[string]string{
		"SCRAM-SHA-512": "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
		"PLAIN":         "Authentication failed: Invalid username or password",
	}
	_, errOut, err := e2eKcat(t, 30*time.Second, "", append([]string{"-L", "-b", p.Bootstrap, "-t", topic, "-m", "3"}, kcatSASL(kcatMech, wrong)...)...)
	if err == nil || !strings.Contains(errOut, brokerSays[kcatMech]) {
		t.Errorf("kcat with a wrong password: exit %v, want a failure with %q\n%s", err, brokerSays[kcatMech], errOut)
	}
	// The console consumer prints the exception and exits 0.
	_, errOut, _ = e2eJava(t, nil, "", testenv.JavaConsoleConsumer, "--bootstrap-server", p.Bootstrap, "--topic", topic,
		"--from-beginning", "--timeout-ms", "5000", "--command-config", javaProps(wrong))
	if !strings.Contains(errOut, "SaslAuthenticationException: "+brokerSays["SCRAM-SHA-512"]) {
		t.Errorf("java with a wrong password: want SaslAuthenticationException with the broker's message\n%s", tailLines(errOut, 20))
	}
	if n := e2eSum(e2eSecureEnd(t, b, topic)); n != int64(len(want)) {
		t.Errorf("%d records stored, want %d (nothing from the failed logins)", n, len(want))
	}
}

// e2eKcatSCRAMWorks reports whether kcat's librdkafka is 2.6.1 or newer,
// the first whose SCRAM Kafka 4.x brokers accept.
func e2eKcatSCRAMWorks(t *testing.T) bool {
	t.Helper()
	out, _, _ := e2eKcat(t, 10*time.Second, "", "-V")
	m := regexp.MustCompile(`librdkafka (\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kcat -V does not name its librdkafka version:\n%s", out)
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v[0] > 2 || v[0] == 2 && (v[1] > 6 || v[1] == 6 && v[2] >= 1)
}

// e2eSecureEnd are a topic's end offsets on the secure broker.
func e2eSecureEnd(t *testing.T, b *e2eSecureBroker, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, []string{b.internal}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}
