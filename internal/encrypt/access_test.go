package encrypt

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// accessRules: "sec-err" and "sec-ct" may be decrypted by alice (SASL) and
// by the certificate of CN=svc; "sec-err" answers others with an error,
// "sec-ct" with the ciphertext; "open" has no access section; "wo" may be
// produced to by alice only; "src.sec-err" is a replica of "sec-err" whose
// own rule has no access section.
var accessRules = []policy.RuleConfig{
	{Topics: []string{"sec-err"}, KEK: "KEK-sec", Access: &policy.AccessConfig{
		Decrypt: []string{"User:alice", "CN=svc,*"}}},
	{Topics: []string{"sec-ct"}, KEK: "KEK-sec", Access: &policy.AccessConfig{
		Decrypt: []string{"User:alice", "CN=svc,*"}, OnDenied: policy.DeniedCiphertext}},
	{Topics: []string{"wo"}, KEK: "KEK-sec", Access: &policy.AccessConfig{Produce: []string{"User:alice"}}},
	{TopicRegex: ".*", KEK: "KEK-sec"},
}

func newAccessFilter(t testing.TB, aud audit.Emitter) *Filter {
	t.Helper()
	f := newFilter(t, accessRules, []string{"KEK-sec"}, func(o *Options) { o.Audit = aud })
	pol, err := policy.Compile(&policy.Config{Rules: accessRules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted,
		Replicas: []policy.ReplicaConfig{{TopicRegex: `src\.(.*)`, OriginTopic: "$1"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.Swap(pol, f.state.Load().keys)
	return f
}

var (
	alice   = filter.NewIdentity(nil, "User:alice", "SCRAM-SHA-512")
	bob     = filter.NewIdentity(nil, "User:bob", "PLAIN")
	svcCert = filter.NewIdentity([]string{"CN=svc,O=Example", "SAN:DNS:svc.example"}, "", "")
	anon    = filter.NewIdentity(nil, "", "")
)

// produceAs is encryptThrough as a client with identity id: the forwarded
// record set, or the local answer's code.
func produceAs(t *testing.T, f *Filter, id *filter.Identity, topic string, batch []byte) ([]byte, int16) {
	t.Helper()
	fr, hl := produceFrame(-1, []producePart{{topic, 0, batch}})
	s := filter.Standalone{Identity: id}
	x := s.Exchange(int16(kmsg.Produce), produceVersion, fr, hl, nil, 0)
	if err := f.OnRequest(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if x.Local {
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(produceVersion)
		if err := resp.ReadFrom(x.Response[5:]); err != nil {
			t.Fatal(err)
		}
		return nil, resp.Topics[0].Partitions[0].ErrorCode
	}
	var out kmsg.ProduceRequest
	out.SetVersion(produceVersion)
	if err := out.ReadFrom(x.Request[x.HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out.Topics[0].Partitions[0].Records), 0
}

// fetchAs runs a one-partition Fetch response through the filter as a
// client with identity id (Fetch, or ShareFetch with share).
func fetchAs(t *testing.T, f *Filter, id *filter.Identity, topic string, set []byte, share bool) ([]byte, int16) {
	t.Helper()
	if share {
		sf := kmsg.NewPtrShareFetchResponse()
		sf.SetVersion(1)
		st := kmsg.NewShareFetchResponseTopic()
		st.TopicID = [16]byte{7}
		sp := kmsg.NewShareFetchResponseTopicPartition()
		sp.Records = set
		st.Partitions = append(st.Partitions, sp)
		sf.Topics = append(sf.Topics, st)
		fr, hl := responseFrame(int16(kmsg.ShareFetch), 1, sf.AppendTo(nil))
		s := filter.Standalone{Topics: map[[16]byte]string{{7}: topic}, Identity: id}
		x := s.Exchange(int16(kmsg.ShareFetch), 1, nil, 0, fr, hl)
		if err := s.Respond(context.Background(), x, f); err != nil {
			t.Fatal(err)
		}
		out := kmsg.NewPtrShareFetchResponse()
		out.SetVersion(1)
		if err := out.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
			t.Fatal(err)
		}
		p := out.Topics[0].Partitions[0]
		return p.Records, p.ErrorCode
	}
	fr, hl := fetchResponse([]fetchPart{{topic: topic, set: set}})
	s := filter.Standalone{Identity: id}
	x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, fr, hl)
	if err := s.Respond(context.Background(), x, f); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(fetchVersion)
	if err := resp.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	return p.RecordBatches, p.ErrorCode
}

// hasMarker reports whether any record of set carries kseal's marker.
func hasMarker(t *testing.T, set []byte) bool {
	t.Helper()
	p := records.NewProcessor()
	it := records.NewBatchIter(set)
	for it.Next() {
		if err := p.Reset(it.Batch()); err != nil {
			t.Fatal(err)
		}
		if ok, err := p.HasHeader(recordcrypt.HeaderKey); err != nil || ok {
			return ok
		}
	}
	return false
}

type auditSink struct{ events []audit.Event }

func (a *auditSink) Emit(e audit.Event) { a.events = append(a.events, e) }

// A reader on a rule's decrypt list gets plaintext; any other gets the
// partition error (onDenied ERROR, the default) or the records exactly as
// stored (CIPHERTEXT), on Fetch and ShareFetch: never plaintext. Denials
// are counted per topic and operation and audited with the identity.
func TestAccessDecrypt(t *testing.T) {
	aud := &auditSink{}
	f := newAccessFilter(t, aud)
	secret := []byte("the secret value")
	for _, topic := range []string{"sec-err", "sec-ct"} {
		stored, code := produceAs(t, f, bob, topic, plainBatch([][]byte{secret}))
		if code != 0 {
			t.Fatalf("%s: produce refused with %d (no produce list)", topic, code)
		}
		if bytes.Contains(stored, secret) || !hasMarker(t, stored) {
			t.Fatalf("%s: the stored record set is not encrypted", topic)
		}
		for _, share := range []bool{false, true} {
			for _, id := range []*filter.Identity{alice, svcCert} {
				got, code := fetchAs(t, f, id, topic, stored, share)
				if code != 0 {
					t.Fatalf("%s share=%v as %s: code %d", topic, share, id, code)
				}
				if v := values(t, got); len(v) != 1 || !bytes.Equal(v[0], secret) {
					t.Fatalf("%s share=%v as %s: values %q", topic, share, id, v)
				}
			}
			for _, id := range []*filter.Identity{bob, anon, filter.NewIdentity([]string{"CN=svcx,O=Example"}, "User:Alice", "PLAIN")} {
				got, code := fetchAs(t, f, id, topic, stored, share)
				if bytes.Contains(got, secret) {
					t.Fatalf("%s share=%v as %s: plaintext delivered", topic, share, id)
				}
				switch topic {
				case "sec-err":
					if code != kerr.TopicAuthorizationFailed.Code || len(got) != 0 {
						t.Fatalf("%s share=%v as %s: code %d, %d bytes; want TOPIC_AUTHORIZATION_FAILED and none", topic, share, id, code, len(got))
					}
				case "sec-ct":
					if code != 0 || !bytes.Equal(got, stored) {
						t.Fatalf("%s share=%v as %s: code %d; want the records exactly as stored", topic, share, id, code)
					}
				}
			}
		}
	}
	if n := testutil.ToFloat64(f.m.access.vec.WithLabelValues("sec-err", opFetch)); n != 3 {
		t.Errorf("kseal_access_denied_total{sec-err,fetch} = %v, want 3", n)
	}
	if n := testutil.ToFloat64(f.m.access.vec.WithLabelValues("sec-ct", opShareFetch)); n != 3 {
		t.Errorf("kseal_access_denied_total{sec-ct,share_fetch} = %v, want 3", n)
	}
	found := false
	for _, e := range aud.events {
		if e.Type == audit.AuthorizationRefused && e.Topic == "sec-err" && e.Identity == "User:bob" &&
			e.ErrorCode == kerr.TopicAuthorizationFailed.Code {
			found = true
		}
	}
	if !found {
		t.Errorf("no authorization_refused event for User:bob on sec-err in %+v", aud.events)
	}
}

// A topic without an access section is decrypted for everyone, and a
// replica topic is decrypted only for readers its origin's rule allows.
func TestAccessOpenAndReplica(t *testing.T) {
	f := newAccessFilter(t, nil)
	secret := []byte("replicated secret")
	open, _ := produceAs(t, f, anon, "open", plainBatch([][]byte{secret}))
	if got, code := fetchAs(t, f, anon, "open", open, false); code != 0 || len(values(t, got)) != 1 {
		t.Fatalf("open topic: code %d", code)
	}
	// MirrorMaker copies sec-err's records byte for byte into src.sec-err.
	stored, _ := produceAs(t, f, alice, "sec-err", plainBatch([][]byte{secret}))
	if got, code := fetchAs(t, f, alice, "src.sec-err", stored, false); code != 0 || !bytes.Equal(values(t, got)[0], secret) {
		t.Fatalf("replica as alice: code %d", code)
	}
	got, code := fetchAs(t, f, bob, "src.sec-err", stored, false)
	if code != kerr.TopicAuthorizationFailed.Code || bytes.Contains(got, secret) {
		t.Fatalf("replica as bob: code %d; want TOPIC_AUTHORIZATION_FAILED (the origin's rule)", code)
	}
}

// A client not on a rule's produce list gets TOPIC_AUTHORIZATION_FAILED
// and nothing is forwarded; one on it produces encrypted records.
func TestAccessProduce(t *testing.T) {
	aud := &auditSink{}
	f := newAccessFilter(t, aud)
	secret := []byte("write-only")
	for _, id := range []*filter.Identity{bob, anon, svcCert} {
		if set, code := produceAs(t, f, id, "wo", plainBatch([][]byte{secret})); code != kerr.TopicAuthorizationFailed.Code || set != nil {
			t.Fatalf("produce as %s: code %d, forwarded %v; want TOPIC_AUTHORIZATION_FAILED", id, code, set != nil)
		}
	}
	set, code := produceAs(t, f, alice, "wo", plainBatch([][]byte{secret}))
	if code != 0 || bytes.Contains(set, secret) || !hasMarker(t, set) {
		t.Fatalf("produce as alice: code %d", code)
	}
	if n := testutil.ToFloat64(f.m.access.vec.WithLabelValues("wo", opProduce)); n != 3 {
		t.Errorf("kseal_access_denied_total{wo,produce} = %v, want 3", n)
	}
	var ev *audit.Event
	for i := range aud.events {
		if aud.events[i].Type == audit.AuthorizationRefused {
			ev = &aud.events[i]
		}
	}
	if ev == nil || ev.Identity != "User:bob" || ev.Topic != "wo" {
		t.Errorf("authorization_refused event %+v, want one naming User:bob and wo", ev)
	}
}

// A denied reader costs no more allocations per fetch than a partition
// without encrypted records, once its topic's metric exists (the check
// reads the identity and the cached selection).
func TestAccessDeniedFetchAllocs(t *testing.T) {
	f := newAccessFilter(t, nil)
	stored, _ := produceAs(t, f, alice, "sec-ct", plainBatch([][]byte{[]byte("v")}))
	ctx := context.Background()
	allocs := func(topic string, set []byte) float64 {
		fr, hl := fetchResponse([]fetchPart{{topic: topic, set: set}})
		s := filter.Standalone{Identity: bob}
		run := func() {
			x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, fr, hl)
			if err := s.Respond(ctx, x, f); err != nil {
				t.Fatal(err)
			}
			s.Done(x)
		}
		run()
		return testing.AllocsPerRun(50, run)
	}
	base := allocs("open", plainBatch([][]byte{[]byte("v")}))
	if n := allocs("sec-ct", stored); n > base {
		t.Errorf("%v allocations per denied fetch, %v for a plaintext partition", n, base)
	}
}
