package codec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Mappers whose proxy host names are as long as the fixtures' broker
// names ("b1.internal"), shorter, and longer.
var (
	sameLenMapper = MapperFunc(func(id int32, _ string, _ int32) (string, int32, bool) {
		return fmt.Sprintf("k%d.internal", id), 9190 + id, true
	})
	shortMapper = MapperFunc(func(id int32, _ string, _ int32) (string, int32, bool) {
		return fmt.Sprintf("p%d", id), 19000 + id, true
	})
	longMapper = MapperFunc(func(id int32, _ string, _ int32) (string, int32, bool) {
		return rwProxyHost(id), rwProxyPort(id), true
	})
)

// forward runs a FetchStream over body, reading through a small buffer so
// that records are streamed in several chunks.
func forward(t testing.TB, m AddressMapper, body []byte, v int16, bufSize int) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	fs := FetchStream{Mapper: m}
	err := fs.Forward(&out, bufio.NewReaderSize(bytes.NewReader(body), bufSize), len(body), v)
	return out.Bytes(), err
}

func decodeFetch(t *testing.T, body []byte, v int16) *kmsg.FetchResponse {
	t.Helper()
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = v
	if err := resp.ReadFrom(body); err != nil { // the test's own bytes
		t.Fatalf("decode v%d: %v", v, err)
	}
	return resp
}

func TestFetchStreamForwardsLikeTheWalker(t *testing.T) {
	mappers := map[string]AddressMapper{"same length": sameLenMapper, "shorter": shortMapper, "longer": longMapper, "dropping": rwFuzzMapper, "identity": rwIdentity, "none": nil}
	for v := int16(0); v <= FetchMaxVersion; v++ {
		for _, recordSize := range []int{0, 8, 40_000} {
			for name, m := range mappers {
				for _, brokers := range [][]int32{nil, {1, 2, 3}} {
					t.Run(fmt.Sprintf("v%d/%dB/%s/%d brokers", v, recordSize, name, len(brokers)), func(t *testing.T) {
						resp := fetchFixture(v, recordSize)
						if v >= fetchFirstFlexible {
							resp.Brokers = fetchBrokers(brokers...)
						}
						body := resp.AppendTo(nil)
						w := FetchWalker{Mapper: m}
						walked, changed, err := w.Walk(nil, body, v, nil)
						if err != nil {
							t.Fatal(err)
						}
						got, err := forward(t, m, body, v, 4096)
						if err != nil {
							t.Fatal(err)
						}
						if len(got) != len(body) {
							t.Fatalf("forwarded %d bytes of %d", len(got), len(body))
						}
						switch {
						case !changed:
							if !bytes.Equal(got, body) {
								t.Fatal("nothing to change, but the forwarded body differs")
							}
							return
						case len(walked) == len(body):
							if !bytes.Equal(got, walked) {
								t.Fatal("same-length rewrite differs from the walker's")
							}
							return
						}
						// Padded or neutralised: the same message but for the
						// endpoints, which are the walker's or gone.
						gotResp, want := decodeFetch(t, got, v), decodeFetch(t, walked, v)
						if !reflect.DeepEqual(gotResp.Topics, want.Topics) {
							t.Fatal("topics differ from the walker's")
						}
						if len(gotResp.Brokers) != 0 && !reflect.DeepEqual(gotResp.Brokers, want.Brokers) {
							t.Fatalf("endpoints %+v, want the walker's %+v or none", gotResp.Brokers, want.Brokers)
						}
						if name == "shorter" && len(gotResp.Brokers) == 0 {
							t.Fatal("shorter proxy names must fit: endpoints dropped")
						}
						if name == "longer" && len(gotResp.Brokers) != 0 {
							t.Fatal("longer proxy names cannot fit, yet endpoints were kept")
						}
						if bytes.Contains(got, []byte(".internal")) {
							t.Fatal("a broker host name was forwarded")
						}
					})
				}
			}
		}
	}
}

func TestFetchStreamBadInput(t *testing.T) {
	v := FetchMaxVersion
	resp := fetchFixture(v, 5000)
	resp.Brokers = fetchBrokers(1, 2)
	body := resp.AppendTo(nil)
	for _, cut := range []int{0, 1, 7, 100, len(body) / 2, len(body) - 30, len(body) - 1} {
		// The frame claims the whole body, the stream ends early.
		var out bytes.Buffer
		fs := FetchStream{Mapper: shortMapper}
		err := fs.Forward(&out, bufio.NewReaderSize(bytes.NewReader(body[:cut]), 4096), len(body), v)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("stream cut at %d: err = %v, want unexpected EOF", cut, err)
		}
		// The frame itself is short: the message overruns it.
		if _, err := forward(t, shortMapper, body[:cut], v, 4096); !errors.Is(err, ErrMalformed) {
			t.Errorf("frame of %d bytes: err = %v, want ErrMalformed", cut, err)
		}
	}
	// Bytes after the message.
	if _, err := forward(t, shortMapper, append(bytes.Clone(body), 0), v, 4096); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: err = %v, want ErrMalformed", err)
	}
	if _, err := forward(t, nil, body, FetchMaxVersion+1, 4096); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("unknown version: err = %v", err)
	}
}

func TestPadTags(t *testing.T) {
	tags := []Tag{{Key: 0, Data: []byte("abc")}}
	least := len(AppendTags(nil, tags))
	for size := least; size < least+300; size++ {
		out, ok := padTags(nil, tags, size)
		// One more tag takes a key byte, its length varint and the data.
		gap, fits := size-least, size == least
		for n := 0; n <= gap && !fits; n++ {
			fits = 1+len(binary.AppendUvarint(nil, uint64(n)))+n == gap
		}
		if ok != fits {
			t.Fatalf("size %d: ok = %v, want %v", size, ok, fits)
		}
		if !ok {
			continue
		}
		r := newBodyReader(out, true)
		got, ok := ReadTags(&r.Reader, nil)
		if len(out) != size || !ok || len(r.Src) != 0 || got[0].Key != 0 || string(got[0].Data) != "abc" ||
			len(got) > 1 && (got[1].Key != 1 || len(got) > 2) {
			t.Fatalf("size %d: %d bytes, tags %+v, ok=%v", size, len(out), got, ok)
		}
	}
	if _, ok := padTags(nil, tags, least-1); ok {
		t.Fatal("padded to less than the tags themselves")
	}
	// With tag 0 dropped, padding never takes key 0.
	out, ok := padTags(nil, nil, 10)
	r := newBodyReader(out, true)
	if got, _ := ReadTags(&r.Reader, nil); !ok || len(got) != 1 || got[0].Key != 1 {
		t.Fatalf("padding alone: %+v ok=%v", got, ok)
	}
}

func TestWriteFetchStreamSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzFetchStream", fetchSeeds())
}

// FuzzFetchStream checks the streaming forwarder against the walker: both
// accept the same bodies, and the stream writes exactly the frame's size.
func FuzzFetchStream(f *testing.F) {
	for _, s := range fetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	// Node ids decide: dropped, a shorter name, a longer one.
	m := MapperFunc(func(id int32, host string, port int32) (string, int32, bool) {
		switch id % 3 {
		case 0:
			return "", 0, false
		case 1:
			return "p", port, true
		}
		return host + ".longer", port, true
	})
	w := FetchWalker{Mapper: m}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (FetchMaxVersion + 1)
		walked, changed, werr := w.Walk(nil, body, v, nil)
		got, err := forward(t, m, body, v, 16)
		if (err == nil) != (werr == nil) && !errors.Is(err, ErrTagsNoFit) {
			t.Fatalf("stream err = %v, walker err = %v", err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(body) {
			t.Fatalf("forwarded %d bytes of %d", len(got), len(body))
		}
		if (!changed || len(walked) == len(body)) && !bytes.Equal(got, orBody(walked, changed, body)) {
			t.Fatal("forwarded body differs from the walker's")
		}
	})
}

func orBody(walked []byte, changed bool, body []byte) []byte {
	if changed {
		return walked
	}
	return body
}
