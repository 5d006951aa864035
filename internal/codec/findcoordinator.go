package codec

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
)

// coordinatorUnmappedMessage is the error message given to clients (v1+) when
// the coordinator exists upstream but has no proxy address.
const coordinatorUnmappedMessage = "kseal: coordinator has no proxy address"

// RewriteFindCoordinatorResponse rewrites the coordinator addresses of a
// FindCoordinator response body (api key 10, versions 0 to
// FindCoordinatorMaxVersion) through m and appends the new body to dst.
// Versions 0-3 carry one coordinator, 4+ an array of them (KIP-699).
//
// A coordinator without an error that m cannot map becomes
// COORDINATOR_NOT_AVAILABLE (retriable) with node id -1, host "" and port -1,
// so the client asks again instead of connecting past the proxy. A
// coordinator that already carries an error keeps it; should it still name a
// host, that host is mapped or blanked too, so no broker address leaks.
//
// When nothing changes, changed is false and out is dst unchanged.
func RewriteFindCoordinatorResponse(dst, body []byte, version int16, m AddressMapper) (out []byte, changed bool, err error) {
	if version < 0 || version > FindCoordinatorMaxVersion {
		return dst, false, fmt.Errorf("find coordinator response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, version >= findCoordinatorFirstFlex)
	if version >= 1 {
		r.Int32() // throttle
	}
	if version < findCoordinatorFirstBatched {
		out, changed = rewriteSingleCoordinator(dst, &r, version, m)
	} else {
		out, changed = rewriteCoordinatorArray(dst, &r, m)
	}
	if !r.Ok() {
		return dst, false, fmt.Errorf("find coordinator response v%d: %w", version, ErrMalformed)
	}
	if !changed {
		return dst, false, nil
	}
	return append(out, r.Src...), true, nil
}

// coordinator is one coordinator entry as read and as rewritten.
type coordinator struct {
	nodeID  int32
	host    []byte
	port    int32
	errCode int16
	// newHost is the host to write; set by mapCoordinator.
	newHost string
	// message replaces the error message when set.
	message *string
}

// mapCoordinator decides what the client sees for c and reports whether
// that differs from what the broker sent.
func (c *coordinator) mapCoordinator(m AddressMapper) bool {
	if c.errCode != 0 && len(c.host) == 0 {
		return false // the usual error entry: nothing to map
	}
	ph, pp, ok := mapBroker(m, c.nodeID, c.host, c.port)
	if ok {
		changed := ph != bytesString(c.host) || pp != c.port
		c.newHost, c.port = ph, pp
		return changed
	}
	c.newHost, c.port = "", -1
	if c.errCode == 0 {
		msg := coordinatorUnmappedMessage
		c.errCode = kerr.CoordinatorNotAvailable.Code
		c.nodeID = -1
		c.message = &msg
	}
	return true
}

// rewriteSingleCoordinator handles versions 0-3: error code, error message
// (v1+), node id, host, port, tags (v3+).
func rewriteSingleCoordinator(dst []byte, r *bodyReader, version int16, m AddressMapper) ([]byte, bool) {
	fieldsAt := r.off()
	var c coordinator
	c.errCode = r.Int16()
	var msg []byte
	if version >= 1 {
		msgAt := r.off()
		r.nullableStr()
		msg = r.body[msgAt:r.off()]
	}
	c.nodeID = r.Int32()
	c.host = r.str()
	c.port = r.Int32()
	if !r.Ok() || !c.mapCoordinator(m) {
		return dst, false
	}
	out := append(dst, r.body[:fieldsAt]...)
	out = kbin.AppendInt16(out, c.errCode)
	if version >= 1 {
		if c.message != nil {
			out = appendNullableStr(out, c.message, r.flex)
		} else {
			out = append(out, msg...)
		}
	}
	out = kbin.AppendInt32(out, c.nodeID)
	out = appendStr(out, c.newHost, r.flex)
	out = kbin.AppendInt32(out, c.port)
	return out, true // the tags that follow are copied with the rest
}

// rewriteCoordinatorArray handles versions 4+: an array of (key, node id,
// host, port, error code, error message, tags).
func rewriteCoordinatorArray(dst []byte, r *bodyReader, m AddressMapper) ([]byte, bool) {
	n, _ := r.arrayLen()
	entriesAt := r.off()
	out := append(dst, r.body[:entriesAt]...) // count unchanged: no entry is dropped
	changed := false
	for i := 0; i < n && r.Ok(); i++ {
		keyAt := r.off()
		r.str()
		var c coordinator
		keyEnd := r.off()
		c.nodeID = r.Int32()
		c.host = r.str()
		c.port = r.Int32()
		c.errCode = r.Int16()
		msgAt := r.off()
		r.nullableStr()
		tagsAt := r.off()
		r.skipTags()
		if !r.Ok() {
			break
		}
		if !c.mapCoordinator(m) {
			out = append(out, r.body[keyAt:r.off()]...)
			continue
		}
		changed = true
		out = append(out, r.body[keyAt:keyEnd]...)
		out = kbin.AppendInt32(out, c.nodeID)
		out = appendStr(out, c.newHost, r.flex)
		out = kbin.AppendInt32(out, c.port)
		out = kbin.AppendInt16(out, c.errCode)
		if c.message != nil {
			out = appendNullableStr(out, c.message, r.flex)
		} else {
			out = append(out, r.body[msgAt:tagsAt]...)
		}
		out = append(out, r.body[tagsAt:r.off()]...)
	}
	return out, changed
}
