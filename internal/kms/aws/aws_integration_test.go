//go:build integration

package aws

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/testenv"
)

// motoServer is one moto_server started by scripts/moto.sh.
type motoServer struct {
	t      *testing.T
	script string
	dir    string
	env    map[string]string
}

func startMoto(t *testing.T, dir, port string) *motoServer {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	m := &motoServer{t: t, script: filepath.Join(root, "scripts", "moto.sh"), dir: dir}
	args := []string{m.script, "start", "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid())}
	if port != "" {
		args = append(args, "--port", port)
	}
	cmd := exec.Command("bash", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/moto.sh start: %v\n%s", err, out)
	}
	t.Cleanup(m.stop)
	f, err := os.Open(filepath.Join(dir, "moto.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m.env = map[string]string{}
	for s := bufio.NewScanner(f); s.Scan(); {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			m.env[k] = v
		}
	}
	return m
}

func (m *motoServer) stop() {
	if out, err := exec.Command("bash", m.script, "stop", "--dir", m.dir).CombinedOutput(); err != nil {
		m.t.Errorf("scripts/moto.sh stop: %v\n%s", err, out)
	}
}

func (m *motoServer) signal(sig syscall.Signal) {
	pid, err := strconv.Atoi(m.env["MOTO_PID"])
	if err != nil {
		m.t.Fatalf("MOTO_PID: %v", err)
	}
	if sig == syscall.SIGSTOP {
		err = testenv.Freeze(pid) // returns once every thread is stopped
	} else {
		err = syscall.Kill(pid, sig)
	}
	if err != nil {
		m.t.Fatalf("signal %v to moto (pid %d): %v", sig, pid, err)
	}
}

// admin is a plain SDK client for what kseal never does: create keys and
// aliases, rotate, disable.
func (m *motoServer) admin() *awskms.Client {
	return awskms.New(awskms.Options{
		Region:       m.env["AWS_REGION"],
		BaseEndpoint: awssdk.String(m.env["MOTO_ENDPOINT"]),
		Credentials:  awssdk.CredentialsProviderFunc(m.creds),
	})
}

func (m *motoServer) creds(context.Context) (awssdk.Credentials, error) {
	return awssdk.Credentials{AccessKeyID: m.env["AWS_ACCESS_KEY_ID"], SecretAccessKey: m.env["AWS_SECRET_ACCESS_KEY"]}, nil
}

func createKEK(t *testing.T, admin *awskms.Client, alias string) string {
	t.Helper()
	out, err := admin.CreateKey(t.Context(), &awskms.CreateKeyInput{Description: awssdk.String("kseal test " + alias)})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	id := *out.KeyMetadata.KeyId
	if _, err := admin.CreateAlias(t.Context(), &awskms.CreateAliasInput{AliasName: awssdk.String(alias), TargetKeyId: &id}); err != nil {
		t.Fatalf("CreateAlias %s: %v", alias, err)
	}
	return id
}

// TestMoto runs the provider against a real moto server: round trip,
// rotation, missing and disabled keys, a hung and a stopped server. Set
// KSEAL_IT_NO_AWS=1 to skip it; otherwise failing to install or start moto
// fails the test.
func TestMoto(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_AWS") == "1" {
		t.Skip("KSEAL_IT_NO_AWS=1: skipping the AWS KMS test against moto")
	}
	began := time.Now()
	dir := t.TempDir()
	m := startMoto(t, dir, "")
	t.Logf("moto up after %v", time.Since(began).Round(time.Millisecond))
	admin := m.admin()

	// The provider reads static credentials the way a deployment would:
	// the key id from a variable, the secret from a file.
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(m.env["AWS_SECRET_ACCESS_KEY"]), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KSEAL_IT_AWS_KEY_ID", m.env["AWS_ACCESS_KEY_ID"])
	cfg := NewConfig()
	cfg.Region = m.env["AWS_REGION"]
	cfg.Endpoint = m.env["MOTO_ENDPOINT"]
	cfg.Timeout = time.Second
	cfg.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyIDEnv: "KSEAL_IT_AWS_KEY_ID", SecretAccessKeyFile: secretFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opened, err := cfg.Open(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := opened.(*KMS)
	ctx := t.Context()

	keyID := createKEK(t, admin, "alias/KEK-orders")
	t.Run("readiness probe", func(t *testing.T) {
		// The probe alias does not exist: NotFoundException is an answer.
		if err := p.Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
	})
	var first kms.DEK
	if !t.Run("round trip", func(t *testing.T) {
		ref, err := p.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref.ID != keyID {
			t.Fatalf("ResolveKEK = %+v, %v; want ID %s", ref, err, keyID)
		}
		first, err = p.GenerateDEK(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if first.EDEK[0] != formUUID {
			t.Fatalf("EDEK form %d, want %d (16-byte key id)", first.EDEK[0], formUUID)
		}
		t.Logf("EDEK %d bytes: 17 for the key id + a %d-byte CiphertextBlob (moto's; AWS's is about 184)", len(first.EDEK), len(first.EDEK)-17)
		got, err := p.DecryptDEK(ctx, first.EDEK)
		if err != nil || !bytes.Equal(got, first.Key) {
			t.Fatalf("DecryptDEK = %v (same key: %v)", err, bytes.Equal(got, first.Key))
		}
		if info, err := p.DescribeEDEK(first.EDEK); err != nil || info.KEK != keyID {
			t.Fatalf("DescribeEDEK = %+v, %v", info, err)
		}
		// The blob is bound to the encryption context: without it moto
		// (like AWS) refuses to decrypt.
		_, keyInEDEK, _ := parseEDEK(first.EDEK)
		if _, err := admin.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: keyInEDEK, KeyId: &keyID}); err == nil {
			t.Fatal("Decrypt without the encryption context succeeded")
		}
	}) {
		t.FailNow()
	}

	t.Run("EDEKs naming keys by ARN", func(t *testing.T) {
		md, err := admin.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: &keyID})
		if err != nil {
			t.Fatal(err)
		}
		arn := *md.KeyMetadata.Arn
		account := strings.Split(arn, ":")[4]
		_, blob, _ := parseEDEK(first.EDEK)
		edek := func(id string) []byte {
			e, err := appendKeyID(nil, id)
			if err != nil {
				t.Fatal(err)
			}
			return append(e, blob...)
		}
		foreign := strings.Replace(arn, ":"+account+":", ":999988887777:", 1)
		otherRegion := strings.Replace(arn, ":"+cfg.Region+":", ":ap-south-2:", 1)
		// Without allowedAccounts only bare key ids open: the EDEK an
		// attacker would write names a key ARN.
		for _, id := range []string{arn, foreign, otherRegion, "alias/KEK-orders"} {
			if _, err := p.DecryptDEK(ctx, edek(id)); err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) {
				t.Errorf("EDEK naming %s: %v, want a plain refusal", id, err)
			}
		}
		c2 := *cfg
		c2.AllowedAccounts = []string{account}
		o2, err := c2.Open(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		p2 := o2.(*KMS)
		if got, err := p2.DecryptDEK(ctx, edek(arn)); err != nil || !bytes.Equal(got, first.Key) {
			t.Errorf("key ARN of an allowed account: %v", err)
		}
		if _, err := p2.DecryptDEK(ctx, edek(foreign)); err == nil || !strings.Contains(err.Error(), "allowedAccounts") {
			t.Errorf("key ARN of another account: %v, want a refusal naming allowedAccounts", err)
		}
		// What the check stops: moto itself does not care which account
		// the ARN names.
		if _, err := admin.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob, KeyId: &foreign, EncryptionContext: EncryptionContext}); err == nil {
			t.Log("moto decrypts with a key ARN of another account; kseal refuses it before asking")
		}
	})

	// A multi-Region key (mrk-...) with a replica in eu-west-1: an EDEK
	// written in us-east-1 naming the key by ARN is sent to the eu-west-1
	// replica with allowedRegions and refused without. moto 5.2.5 cannot
	// decrypt under any multi-Region key: its CiphertextBlob keeps 36 bytes
	// of key id, which cuts "mrk-" + UUID short, so its Decrypt answers
	// AccessDeniedException even in the key's own region. Until it can,
	// decryptsOrMotoBug accepts that answer (a request that reached moto)
	// and the unit test TestMultiRegionKeyARNs checks the KeyId sent.
	t.Run("multi-Region key", func(t *testing.T) {
		decryptsOrMotoBug := func(t *testing.T, p *KMS, d kms.DEK) {
			t.Helper()
			got, err := p.DecryptDEK(ctx, d.EDEK)
			switch {
			case err == nil && !bytes.Equal(got, d.Key):
				t.Fatal("decrypted a different key")
			case err != nil && !strings.Contains(err.Error(), "operation error KMS: Decrypt") || err != nil && !strings.Contains(err.Error(), "AccessDeniedException"):
				t.Fatalf("Decrypt: %v, want success or moto's multi-Region AccessDeniedException", err)
			case err != nil:
				t.Log("moto cannot decrypt under multi-Region keys (truncated key id in its blob); the request reached it")
			}
		}
		out, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{MultiRegion: awssdk.Bool(true), Description: awssdk.String("kseal mrk")})
		if err != nil {
			t.Fatalf("CreateKey MultiRegion: %v", err)
		}
		mrk, primaryARN := *out.KeyMetadata.KeyId, *out.KeyMetadata.Arn
		if !strings.HasPrefix(mrk, "mrk-") {
			t.Fatalf("multi-Region key id %q", mrk)
		}
		if _, err := admin.ReplicateKey(ctx, &awskms.ReplicateKeyInput{KeyId: &mrk, ReplicaRegion: awssdk.String("eu-west-1")}); err != nil {
			t.Fatalf("ReplicateKey: %v", err)
		}
		account := strings.Split(primaryARN, ":")[4]
		if _, err := admin.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: awssdk.String("alias/KEK-mrk"), TargetKeyId: &mrk}); err != nil {
			t.Fatal(err)
		}
		open := func(region string, edit func(*Config)) *KMS {
			c := *cfg
			c.Region = region
			if edit != nil {
				edit(&c)
			}
			o, err := c.Open(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return o.(*KMS)
		}
		// Writer in us-east-1, naming keys by alias ARN: its EDEKs hold the key ARN.
		writer := open("us-east-1", func(c *Config) { c.AliasPrefix = "arn:aws:kms:us-east-1:" + account + ":alias/" })
		ref, err := writer.ResolveKEK(ctx, "KEK-mrk")
		if err != nil || ref.ID != primaryARN {
			t.Fatalf("ResolveKEK = %+v, %v; want the primary's ARN", ref, err)
		}
		d, err := writer.GenerateDEK(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		reader := open("eu-west-1", func(c *Config) {
			c.AllowedAccounts = []string{account}
			c.AllowedRegions = []string{"us-east-1"}
		})
		decryptsOrMotoBug(t, reader, d)
		strict := open("eu-west-1", func(c *Config) { c.AllowedAccounts = []string{account} })
		if _, err := strict.DecryptDEK(ctx, d.EDEK); err == nil || !strings.Contains(err.Error(), "allowedRegions") {
			t.Fatalf("replica region without allowedRegions: %v, want a refusal naming allowedRegions", err)
		}
		// The bare mrk id (default alias/ prefix) is not tried here: moto
		// makes multi-Region key ids "mrk-" + a dashed UUID, where AWS's are
		// "mrk-" + 32 hex digits (the only form kseal's EDEK codec accepts
		// for bare ids); the unit tests cover that form.
	})

	t.Run("rotation", func(t *testing.T) {
		if _, err := admin.RotateKeyOnDemand(ctx, &awskms.RotateKeyOnDemandInput{KeyId: &keyID}); err != nil {
			t.Fatalf("RotateKeyOnDemand: %v", err)
		}
		rot, err := admin.ListKeyRotations(ctx, &awskms.ListKeyRotationsInput{KeyId: &keyID})
		if err != nil || len(rot.Rotations) != 1 {
			t.Fatalf("ListKeyRotations = %v, %v", rot, err)
		}
		// AWS rotates the key material behind the same key id, and the
		// blob says which material made it, so nothing changes for kseal:
		// the alias resolves to the same key, new DEKs work, and DEKs made
		// before the rotation still decrypt. (moto records the rotation
		// but keeps one material, so this cannot show new material in use.)
		ref, err := p.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref.ID != keyID {
			t.Fatalf("after rotation ResolveKEK = %+v, %v", ref, err)
		}
		second, err := p.GenerateDEK(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(second.Key, first.Key) || bytes.Equal(second.EDEK, first.EDEK) {
			t.Fatal("the new DEK equals the old one")
		}
		for i, d := range []kms.DEK{first, second} {
			got, err := p.DecryptDEK(ctx, d.EDEK)
			if err != nil || !bytes.Equal(got, d.Key) {
				t.Fatalf("DEK %d after rotation: %v", i, err)
			}
		}
	})

	t.Run("alias moved to another key", func(t *testing.T) {
		newID := createKEK(t, admin, "alias/KEK-moved")
		if _, err := admin.UpdateAlias(ctx, &awskms.UpdateAliasInput{AliasName: awssdk.String("alias/KEK-moved"), TargetKeyId: &keyID}); err != nil {
			t.Fatal(err)
		}
		ref, err := p.ResolveKEK(ctx, "KEK-moved")
		if err != nil || ref.ID != keyID || ref.ID == newID {
			t.Fatalf("ResolveKEK after UpdateAlias = %+v, %v; want %s", ref, err, keyID)
		}
	})

	t.Run("unknown keys", func(t *testing.T) {
		if _, err := p.ResolveKEK(ctx, "KEK-nope"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("unknown alias: %v, want ErrKeyNotFound", err)
		}
		if _, err := p.ResolveKEK(ctx, "KEK-orders.v2"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("name that is no alias: %v, want ErrKeyNotFound", err)
		}
		if _, err := p.GenerateDEK(ctx, kms.KEKRef{Name: "x", ID: "00000000-1111-2222-3333-444444444444"}); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("GenerateDEK for a missing key: %v, want ErrKeyNotFound", err)
		}
		// An EDEK naming a key that does not exist (deleted, or another
		// account's): Decrypt is pinned to that key id.
		_, blob, _ := parseEDEK(first.EDEK)
		other, _ := appendKeyID(nil, "00000000-1111-2222-3333-444444444444")
		if _, err := p.DecryptDEK(ctx, append(other, blob...)); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("EDEK for a missing key: %v, want ErrKeyNotFound", err)
		}
		// An EDEK claiming another existing key than the one that made it
		// is refused, but it is no missing key.
		otherID := createKEK(t, admin, "alias/KEK-other")
		moved, _ := appendKeyID(nil, otherID)
		_, err := p.DecryptDEK(ctx, append(moved, blob...))
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("EDEK pinned to the wrong key: %v, want a plain error", err)
		}
		tampered := bytes.Clone(first.EDEK)
		tampered[len(tampered)-1] ^= 1
		_, err = p.DecryptDEK(ctx, tampered)
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("tampered EDEK: %v, want a plain error", err)
		}
	})

	t.Run("disabled and deleted keys", func(t *testing.T) {
		// moto reports the state in DescribeKey, so ResolveKEK is tested
		// here; it still serves GenerateDataKey and Decrypt for disabled
		// keys, so DisabledException is covered by TestErrorClassification
		// against a fake instead.
		id := createKEK(t, admin, "alias/KEK-disabled")
		if _, err := admin.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: &id}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ResolveKEK(ctx, "KEK-disabled"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("disabled key: %v, want ErrKeyUnusable only", err)
		}
		id = createKEK(t, admin, "alias/KEK-deleted")
		if _, err := admin.ScheduleKeyDeletion(ctx, &awskms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: awssdk.Int32(7)}); err != nil {
			t.Fatal(err)
		}
		md, err := admin.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: &id})
		if err != nil || md.KeyMetadata.KeyState != types.KeyStatePendingDeletion {
			t.Fatalf("DescribeKey after ScheduleKeyDeletion = %v, %v", md, err)
		}
		if _, err := p.ResolveKEK(ctx, "KEK-deleted"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("key pending deletion: %v, want ErrKeyUnusable only", err)
		}
	})

	t.Run("hung server", func(t *testing.T) {
		m.signal(syscall.SIGSTOP)
		stopped := true
		defer func() {
			if stopped {
				m.signal(syscall.SIGCONT)
			}
		}()
		start := time.Now()
		_, err := p.DecryptDEK(ctx, first.EDEK)
		if d := time.Since(start); d > cfg.Timeout+time.Second {
			t.Fatalf("DecryptDEK took %v with a %v timeout", d, cfg.Timeout)
		}
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("hung server: %v, want ErrUnavailable", err)
		}
		m.signal(syscall.SIGCONT)
		stopped = false
		got, err := p.DecryptDEK(ctx, first.EDEK)
		if err != nil || !bytes.Equal(got, first.Key) {
			t.Fatalf("after SIGCONT: %v", err)
		}
	})

	t.Run("stopped and restarted server", func(t *testing.T) {
		port := m.env["MOTO_PORT"]
		m.stop()
		start := time.Now()
		for _, call := range []func() error{
			func() error { _, err := p.ResolveKEK(ctx, "KEK-orders"); return err },
			func() error { _, err := p.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-orders", ID: keyID}); return err },
			func() error { _, err := p.DecryptDEK(ctx, first.EDEK); return err },
		} {
			if err := call(); !errors.Is(err, kms.ErrUnavailable) {
				t.Fatalf("server stopped: %v, want ErrUnavailable", err)
			}
		}
		if d := time.Since(start); d > 3*cfg.Timeout {
			t.Fatalf("three calls to a stopped server took %v", d)
		}
		if err := p.Probe(ctx); !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("Probe of the stopped server: %v, want ErrUnavailable", err)
		}
		// moto keeps its keys in memory: the restarted server has none, so
		// the same client must work again against new keys on the same
		// endpoint.
		m2 := startMoto(t, t.TempDir(), port)
		id := createKEK(t, m2.admin(), "alias/KEK-orders")
		ref, err := p.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref.ID != id {
			t.Fatalf("after restart ResolveKEK = %+v, %v", ref, err)
		}
		d, err := p.GenerateDEK(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.DecryptDEK(ctx, d.EDEK); err != nil || !bytes.Equal(got, d.Key) {
			t.Fatalf("after restart DecryptDEK: %v", err)
		}
	})
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}
