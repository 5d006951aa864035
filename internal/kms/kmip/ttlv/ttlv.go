// Package ttlv encodes and decodes KMIP's Tag-Type-Length-Value format
// (OASIS KMIP 1.x/2.x, section 9.1 of the 1.x specifications): a 3-byte
// tag, a 1-byte type, a 4-byte big-endian length, and the value padded with
// zeros to a multiple of 8 bytes.
//
// Decoding reads bytes from the network, so it is bounded: the caller gives
// the message (whose size it has already limited), every length is checked
// against what is left before anything is allocated, and Limits caps the
// nesting depth and the number of items. Decoding is strict: fixed-size
// types must have their fixed length, padding must be zeros and booleans 0
// or 1, so one message has one byte form.
package ttlv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type is a TTLV item type.
type Type byte

// The item types of KMIP 1.x and 2.x.
const (
	Structure   Type = 0x01
	Integer     Type = 0x02
	LongInteger Type = 0x03
	BigInteger  Type = 0x04
	Enumeration Type = 0x05
	Boolean     Type = 0x06
	TextString  Type = 0x07
	ByteString  Type = 0x08
	DateTime    Type = 0x09
	Interval    Type = 0x0A
)

func (t Type) String() string {
	switch t {
	case Structure:
		return "Structure"
	case Integer:
		return "Integer"
	case LongInteger:
		return "LongInteger"
	case BigInteger:
		return "BigInteger"
	case Enumeration:
		return "Enumeration"
	case Boolean:
		return "Boolean"
	case TextString:
		return "TextString"
	case ByteString:
		return "ByteString"
	case DateTime:
		return "DateTime"
	case Interval:
		return "Interval"
	}
	return fmt.Sprintf("Type(0x%02x)", byte(t))
}

// Tag is a 3-byte KMIP tag (0x42xxxx for the standard ones).
type Tag uint32

// HeaderSize is the size of an item's tag, type and length.
const HeaderSize = 8

// Item is one decoded or to-be-encoded TTLV item. Which field holds the
// value depends on Type: Int for Integer, LongInteger, Enumeration,
// Boolean (0 or 1), DateTime (seconds since the Unix epoch) and Interval
// (seconds); Bytes for TextString, ByteString and BigInteger (two's
// complement, big-endian, a multiple of 8 bytes); Items for Structure.
// Decoded Bytes alias the input.
type Item struct {
	Tag   Tag
	Type  Type
	Int   int64
	Bytes []byte
	Items []Item
}

// Struct makes a Structure.
func Struct(tag Tag, items ...Item) Item { return Item{Tag: tag, Type: Structure, Items: items} }

// Int makes an Integer (32 bits).
func Int(tag Tag, v int32) Item { return Item{Tag: tag, Type: Integer, Int: int64(v)} }

// Long makes a LongInteger.
func Long(tag Tag, v int64) Item { return Item{Tag: tag, Type: LongInteger, Int: v} }

// Enum makes an Enumeration.
func Enum(tag Tag, v uint32) Item { return Item{Tag: tag, Type: Enumeration, Int: int64(v)} }

// Bool makes a Boolean.
func Bool(tag Tag, v bool) Item {
	it := Item{Tag: tag, Type: Boolean}
	if v {
		it.Int = 1
	}
	return it
}

// Text makes a TextString (UTF-8).
func Text(tag Tag, s string) Item { return Item{Tag: tag, Type: TextString, Bytes: []byte(s)} }

// Bytes makes a ByteString.
func Bytes(tag Tag, b []byte) Item { return Item{Tag: tag, Type: ByteString, Bytes: b} }

// DateTimeItem makes a DateTime from Unix seconds.
func DateTimeItem(tag Tag, unix int64) Item { return Item{Tag: tag, Type: DateTime, Int: unix} }

// Find returns the first direct child of a Structure with the tag, or nil.
func (it *Item) Find(tag Tag) *Item {
	for i := range it.Items {
		if it.Items[i].Tag == tag {
			return &it.Items[i]
		}
	}
	return nil
}

// Text returns a TextString's value.
func (it *Item) Text() string { return string(it.Bytes) }

// Errors returned by Decode.
var (
	ErrTruncated = errors.New("ttlv: truncated")
	ErrMalformed = errors.New("ttlv: malformed")
	ErrLimit     = errors.New("ttlv: limit exceeded")
)

// Limits bounds decoding.
type Limits struct {
	MaxDepth int // nesting of Structures; the top item is depth 1
	MaxItems int // items in the whole message
}

// DefaultLimits are enough for any KMIP response kseal asks for.
var DefaultLimits = Limits{MaxDepth: 16, MaxItems: 4096}

// fixedLen is the length field a fixed-size type must carry, or -1.
func fixedLen(t Type) int {
	switch t {
	case Integer, Enumeration, Interval:
		return 4
	case LongInteger, Boolean, DateTime:
		return 8
	}
	return -1
}

func padded(n int) int { return (n + 7) &^ 7 }

// Append appends the encoding of it to dst. It panics on a Type it does not
// know or a BigInteger whose length is not a multiple of 8: both are
// programming errors, since requests are built by this program.
func (it *Item) Append(dst []byte) []byte {
	dst = append(dst, byte(it.Tag>>16), byte(it.Tag>>8), byte(it.Tag), byte(it.Type))
	switch it.Type {
	case Structure:
		lenAt := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		for i := range it.Items {
			dst = it.Items[i].Append(dst)
		}
		binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
		return dst
	case Integer, Enumeration, Interval:
		dst = binary.BigEndian.AppendUint32(dst, 4)
		dst = binary.BigEndian.AppendUint32(dst, uint32(it.Int))
		return append(dst, 0, 0, 0, 0)
	case LongInteger, Boolean, DateTime:
		dst = binary.BigEndian.AppendUint32(dst, 8)
		return binary.BigEndian.AppendUint64(dst, uint64(it.Int))
	case BigInteger, TextString, ByteString:
		if it.Type == BigInteger && len(it.Bytes)%8 != 0 {
			panic("ttlv: BigInteger length not a multiple of 8")
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(it.Bytes)))
		dst = append(dst, it.Bytes...)
		for range padded(len(it.Bytes)) - len(it.Bytes) {
			dst = append(dst, 0)
		}
		return dst
	}
	panic(fmt.Sprintf("ttlv: cannot encode %v", it.Type))
}

// Encode returns the encoding of it.
func Encode(it Item) []byte { return it.Append(nil) }

// Decode decodes exactly one item filling all of b.
func Decode(b []byte, lim Limits) (Item, error) {
	d := decoder{items: lim.MaxItems, maxDepth: lim.MaxDepth}
	it, n, err := d.item(b, 1)
	if err != nil {
		return Item{}, err
	}
	if n != len(b) {
		return Item{}, fmt.Errorf("%w: %d bytes after the item", ErrMalformed, len(b)-n)
	}
	return it, nil
}

// MessageLen returns the total size of the item whose first 8 bytes are hdr
// (so a reader knows how much to read), after checking it is a Structure.
func MessageLen(hdr []byte) (int, error) {
	if len(hdr) < HeaderSize {
		return 0, ErrTruncated
	}
	if Type(hdr[3]) != Structure {
		return 0, fmt.Errorf("%w: message is a %v, not a Structure", ErrMalformed, Type(hdr[3]))
	}
	n := binary.BigEndian.Uint32(hdr[4:8])
	if n%8 != 0 {
		return 0, fmt.Errorf("%w: Structure length %d is not a multiple of 8", ErrMalformed, n)
	}
	return HeaderSize + int(n), nil
}

type decoder struct {
	items    int
	maxDepth int
}

// item decodes one item at the start of b and returns it with the number of
// bytes it took.
func (d *decoder) item(b []byte, depth int) (Item, int, error) {
	if len(b) < HeaderSize {
		return Item{}, 0, ErrTruncated
	}
	if d.items <= 0 {
		return Item{}, 0, fmt.Errorf("%w: too many items", ErrLimit)
	}
	d.items--
	it := Item{Tag: Tag(b[0])<<16 | Tag(b[1])<<8 | Tag(b[2]), Type: Type(b[3])}
	length := binary.BigEndian.Uint32(b[4:8])
	rest := b[HeaderSize:]
	if uint64(length) > uint64(len(rest)) {
		return Item{}, 0, fmt.Errorf("%w: %v 0x%06x declares %d bytes, %d left", ErrTruncated, it.Type, uint32(it.Tag), length, len(rest))
	}
	n := int(length)
	if fl := fixedLen(it.Type); fl >= 0 && n != fl {
		return Item{}, 0, fmt.Errorf("%w: %v 0x%06x has length %d, want %d", ErrMalformed, it.Type, uint32(it.Tag), n, fl)
	}
	total := padded(n)
	if total > len(rest) {
		return Item{}, 0, fmt.Errorf("%w: padding of 0x%06x", ErrTruncated, uint32(it.Tag))
	}
	for _, c := range rest[n:total] {
		if c != 0 {
			return Item{}, 0, fmt.Errorf("%w: non-zero padding in 0x%06x", ErrMalformed, uint32(it.Tag))
		}
	}
	v := rest[:n]
	switch it.Type {
	case Structure:
		if depth >= d.maxDepth {
			return Item{}, 0, fmt.Errorf("%w: nested deeper than %d", ErrLimit, d.maxDepth)
		}
		if n%8 != 0 {
			return Item{}, 0, fmt.Errorf("%w: Structure length %d is not a multiple of 8", ErrMalformed, n)
		}
		for len(v) > 0 {
			child, k, err := d.item(v, depth+1)
			if err != nil {
				return Item{}, 0, err
			}
			it.Items = append(it.Items, child)
			v = v[k:]
		}
	case Integer:
		it.Int = int64(int32(binary.BigEndian.Uint32(v)))
	case Enumeration, Interval:
		it.Int = int64(binary.BigEndian.Uint32(v))
	case LongInteger, DateTime:
		it.Int = int64(binary.BigEndian.Uint64(v))
	case Boolean:
		u := binary.BigEndian.Uint64(v)
		if u > 1 {
			return Item{}, 0, fmt.Errorf("%w: Boolean 0x%06x is %d", ErrMalformed, uint32(it.Tag), u)
		}
		it.Int = int64(u)
	case BigInteger:
		if n%8 != 0 {
			return Item{}, 0, fmt.Errorf("%w: BigInteger length %d is not a multiple of 8", ErrMalformed, n)
		}
		it.Bytes = v
	case TextString, ByteString:
		it.Bytes = v
	default:
		return Item{}, 0, fmt.Errorf("%w: unknown type 0x%02x in 0x%06x", ErrMalformed, byte(it.Type), uint32(it.Tag))
	}
	return it, HeaderSize + total, nil
}
