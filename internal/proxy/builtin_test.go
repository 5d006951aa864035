package proxy

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
)

// An ApiVersions request newer than kseal reads is answered locally, as a
// broker does: header v0 with the request's correlation id, error
// UNSUPPORTED_VERSION and the ApiVersions versions to retry with, readable
// at v0.
func TestApiVersionsTooNewAnsweredLocally(t *testing.T) {
	var s filter.Standalone
	v := int16(codec.ApiVersionsMaxVersion + 1)
	req := appendRequestHeader(nil, int16(kmsg.ApiVersions), v, 77, "t", true)
	x := s.Exchange(int16(kmsg.ApiVersions), v, req, len(req), nil, 0)
	x.CorrelationID = 77
	if err := (apiVersionsFilter{}).OnRequest(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if !x.Local || x.RespHeaderLen != 4 || len(x.Response) < 4 {
		t.Fatalf("local %v, response header %d bytes of %d", x.Local, x.RespHeaderLen, len(x.Response))
	}
	if corr := int32(binary.BigEndian.Uint32(x.Response)); corr != 77 {
		t.Fatalf("correlation id %d", corr)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := resp.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 35 || len(resp.ApiKeys) != 1 || resp.ApiKeys[0].ApiKey != int16(kmsg.ApiVersions) || resp.ApiKeys[0].MaxVersion != codec.ApiVersionsMaxVersion {
		t.Fatalf("response %+v", resp)
	}
	// A version kseal reads goes to the broker.
	y := s.Exchange(int16(kmsg.ApiVersions), codec.ApiVersionsMaxVersion, req, len(req), nil, 0)
	if err := (apiVersionsFilter{}).OnRequest(context.Background(), y); err != nil || y.Local {
		t.Fatalf("local %v, %v", y.Local, err)
	}
}
