package codec

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func jwt(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + "."
}

func oauthMsg(authz, token string) []byte {
	return []byte("n," + authz + ",\x01host=k\x01auth=Bearer " + token + "\x01\x01")
}

func TestParsePlain(t *testing.T) {
	for _, c := range []struct {
		msg, want string
	}{
		{"\x00alice\x00secret", "alice"},
		{"alice\x00alice\x00secret", "alice"},
		{"bob\x00alice\x00secret", ""}, // authzid differs: Kafka refuses
		{"\x00\x00secret", ""},
		{"\x00alice\x00", ""},
		{"\x00alice", ""},
		{"\x00ali\nce\x00pw", ""},
		{"\x00alice\x00pw\x00x", ""},
		{"\x00" + strings.Repeat("a", MaxSASLName+1) + "\x00pw", ""},
		{"\x00\xff\x00pw", ""},
	} {
		got, err := ParsePlain([]byte(c.msg))
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ParsePlain(%q) = %q, %v; want %q", c.msg, got, err, c.want)
		}
	}
}

func TestParseScramClientFirst(t *testing.T) {
	for _, c := range []struct {
		msg, want string
	}{
		{"n,,n=alice,r=abc", "alice"},
		{"y,,n=alice,r=abc", "alice"},
		{"n,a=alice,n=alice,r=abc", "alice"},
		{"n,a=bob,n=alice,r=abc", ""},
		{"n,,n=a=2Cb=3Dc,r=abc", "a,b=c"},
		{"n,,n=a=2Xb,r=abc", ""},
		{"n,,n=a=2,r=abc", ""},
		{"n,,n=a=,r=abc", ""},
		{"n,,n=alice,r=abc,tokenauth=true", ""}, // a delegation token: the owner is not shown
		{"n,,n=alice,r=abc,tokenauth=false", "alice"},
		{"n,,n=alice,r=abc,ext=1", "alice"},
		{"p=tls-unique,,n=alice,r=abc", ""},
		{"n,,n=,r=abc", ""},
		{"n,,n=alice,r=", ""},
		{"n,,r=abc,n=alice", ""},
		{"n,,n=alice", ""},
		{"n,x,n=alice,r=abc", ""},
		{"c=biws,r=abc,p=xyz", ""},
	} {
		got, err := ParseScramClientFirst([]byte(c.msg))
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ParseScramClientFirst(%q) = %q, %v; want %q", c.msg, got, err, c.want)
		}
	}
	if !IsScramClientFinal([]byte("c=biws,r=abc,p=xyz")) || IsScramClientFinal([]byte("n,,n=a,r=b")) {
		t.Error("IsScramClientFinal")
	}
	if !ScramServerFinalOK([]byte("v=abc")) || ScramServerFinalOK([]byte("e=invalid-proof")) || ScramServerFinalOK([]byte("v=")) {
		t.Error("ScramServerFinalOK")
	}
}

func TestParseOAuthBearer(t *testing.T) {
	good := jwt(`{"sub":"svc-orders","exp":1}`)
	for _, c := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"sub", oauthMsg("", good), "svc-orders"},
		{"authzid same", oauthMsg("a=svc-orders", good), "svc-orders"},
		{"authzid differs", oauthMsg("a=root", good), ""},
		{"padded payload", oauthMsg("", good[:len(good)-1]+"=="+"."), "svc-orders"}, // Java's URL decoder takes padding
		{"no sub", oauthMsg("", jwt(`{"exp":1}`)), ""},
		{"sub not a string", oauthMsg("", jwt(`{"sub":7}`)), ""},
		{"empty sub", oauthMsg("", jwt(`{"sub":""}`)), ""},
		{"not json", oauthMsg("", jwt(`sub`)), ""},
		{"two parts", oauthMsg("", "a.b"), ""},
		{"bad base64", oauthMsg("", "a.!!!.c"), ""},
		{"no auth", []byte("n,,\x01host=k\x01\x01"), ""},
		{"two auths", []byte("n,,\x01auth=Bearer " + good + "\x01auth=Bearer " + good + "\x01\x01"), ""},
		{"not bearer", []byte("n,,\x01auth=Basic " + good + "\x01\x01"), ""},
		{"unterminated", []byte("n,,\x01auth=Bearer " + good + "\x01"), ""},
		{"kvsep alone", []byte{0x01}, ""},
		{"huge", oauthMsg("", jwt(`{"sub":"a","x":"`+strings.Repeat("x", 20000)+`"}`)), ""},
	} {
		got, err := ParseOAuthBearer(c.msg, "sub")
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("%s: ParseOAuthBearer = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func TestReadSaslRequests(t *testing.T) {
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "SCRAM-SHA-512"
	for v := int16(0); v <= 1; v++ {
		hs.SetVersion(v)
		if m, err := ReadSaslHandshakeRequest(hs.AppendTo(nil), v); err != nil || m != "SCRAM-SHA-512" {
			t.Errorf("handshake v%d: %q %v", v, m, err)
		}
	}
	if _, err := ReadSaslHandshakeRequest([]byte{0, 9, 'a'}, 1); err == nil {
		t.Error("truncated handshake read")
	}
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.SASLAuthBytes = []byte("\x00alice\x00pw")
	for v := int16(0); v <= 2; v++ {
		au.SetVersion(v)
		b := au.AppendTo(nil)
		if got, err := ReadSaslAuthenticateRequest(b, v); err != nil || !bytes.Equal(got, au.SASLAuthBytes) {
			t.Errorf("authenticate v%d: %q %v", v, got, err)
		}
		if _, err := ReadSaslAuthenticateRequest(b[:len(b)-1], v); err == nil {
			t.Errorf("authenticate v%d: truncated body read", v)
		}
	}
	if _, err := ReadSaslAuthenticateRequest(nil, 3); err == nil {
		t.Error("v3 read")
	}
}

// checkClaim is what every parser's name must be.
func checkClaim(t *testing.T, name string, err error) {
	if err != nil {
		if name != "" {
			t.Fatalf("name %q with error %v", name, err)
		}
		return
	}
	if name == "" || len(name) > MaxSASLName || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\n\r\x7f") {
		t.Fatalf("unusable name %q accepted", name)
	}
}

func FuzzParsePlain(f *testing.F) {
	f.Add([]byte("\x00alice\x00secret"))
	f.Add([]byte("alice\x00alice\x00secret"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, err := ParsePlain(msg)
		checkClaim(t, name, err)
		if err == nil {
			// Never the password: the name is the middle field.
			if _, rest, _ := bytes.Cut(msg, []byte{0}); !bytes.HasPrefix(rest, []byte(name+"\x00")) {
				t.Fatalf("name %q is not the authcid of %q", name, msg)
			}
		}
	})
}

func FuzzParseScramClientFirst(f *testing.F) {
	f.Add([]byte("n,,n=alice,r=abc"))
	f.Add([]byte("n,a=a=3D,n=a=3D,r=x,tokenauth=true"))
	f.Add([]byte("y,,n=a=2Cb,r=abc,e=1"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, err := ParseScramClientFirst(msg)
		checkClaim(t, name, err)
		IsScramClientFinal(msg)
		ScramServerFinalOK(msg)
	})
}

func FuzzParseOAuthBearer(f *testing.F) {
	f.Add(oauthMsg("", jwt(`{"sub":"svc"}`)))
	f.Add(oauthMsg("a=svc", jwt(`{"sub":"svc","aud":["x"]}`)))
	f.Add([]byte{0x01})
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, err := ParseOAuthBearer(msg, "sub")
		checkClaim(t, name, err)
	})
}

func FuzzReadSaslRequests(f *testing.F) {
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.SASLAuthBytes = []byte("n,,n=alice,r=abc")
	for v := int16(0); v <= 2; v++ {
		au.SetVersion(v)
		f.Add(au.AppendTo(nil), v)
	}
	f.Add([]byte{0, 5, 'P', 'L', 'A', 'I', 'N'}, int16(1))
	f.Fuzz(func(t *testing.T, body []byte, version int16) {
		if b, err := ReadSaslAuthenticateRequest(body, version); err == nil && len(b) > len(body) {
			t.Fatal("auth bytes longer than the body")
		}
		if m, err := ReadSaslHandshakeRequest(body, version); err == nil && (m == "" || len(m) > 64) {
			t.Fatalf("mechanism %q", m)
		}
	})
}
