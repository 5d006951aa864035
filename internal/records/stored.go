package records

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// Stored encoders: each writes a valid stream of its codec whose blocks hold
// the input as is (no compression). Rewrite uses them for batches whose
// values kseal encrypted: ciphertext does not compress, so compressing the
// batch again would cost CPU and save next to nothing, while keeping the
// codec attribute keeps a topic's compression.type satisfied (the broker
// does not recompress) and every reader decodes stored blocks at memcpy
// speed. Each encoder grows dst once, to the exact size StoredLen returns,
// and allocates nothing else.

// Block sizes of the stored streams.
const (
	storedZstdBlock   = 64 << 10 // the window declared (Block_Maximum_Size is min(window, 128 KiB))
	storedDeflate     = 65535    // the largest deflate stored block
	storedLz4Block    = 64 << 10 // what the frame declares (lz4.Block64Kb)
	storedXerialBlock = xerialBlockSize
)

// zstd frame (RFC 8878 3.1.1): magic, frame header descriptor 0x80
// (Frame_Content_Size_flag 2: a 4-byte content size; not single segment;
// no checksum, no dictionary), window descriptor 0x30 (exponent 6:
// 2^(10+6) = 64 KiB, what Compress declares too).
var zstdStoredHeader = [...]byte{0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x30}

// gzip member header (RFC 1952): no flags, no mtime, XFL 0, OS 255
// (unknown), as compress/gzip writes it.
var gzipStoredHeader = [...]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// LZ4 frame header (the LZ4 frame format): magic, FLG 0x60 (version 01,
// independent blocks, no block checksums, no content size, no content
// checksum, no dictionary), BD 0x40 (64 KiB blocks), and the header
// checksum, (xxh32(FLG BD) >> 8) & 0xff. Data blocks with the high bit of
// their size set are stored uncompressed; a zero size ends the frame.
var lz4StoredHeader = [...]byte{0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82}

const lz4Uncompressed = 1 << 31

// StoredLen returns the exact length of the stored stream AppendStored
// writes for n bytes with codec (n for CodecNone, -1 for an unknown codec).
func StoredLen(codec Codec, n int) int {
	blocks := func(size int) int { return max(1, (n+size-1)/size) }
	switch codec {
	case CodecNone:
		return n
	case CodecGzip:
		return len(gzipStoredHeader) + 5*blocks(storedDeflate) + n + 8
	case CodecSnappy:
		if n == 0 {
			return 1
		}
		full, last := n/storedXerialBlock, n%storedXerialBlock
		size := len(xerialHeader) + full*(4+snappyLiteralLen(storedXerialBlock))
		if last > 0 {
			size += 4 + snappyLiteralLen(last)
		}
		return size
	case CodecLz4:
		return len(lz4StoredHeader) + 4*((n+storedLz4Block-1)/storedLz4Block) + n + 4
	case CodecZstd:
		return len(zstdStoredHeader) + 4 + 3*blocks(storedZstdBlock) + n
	}
	return -1
}

// AppendStored appends src to dst as a stream of codec made of stored
// (uncompressed) blocks, and returns the extended dst: zstd Raw blocks,
// deflate stored blocks in a gzip member, LZ4 uncompressed blocks, xerial
// snappy chunks of one literal each. CodecNone appends src as is.
func AppendStored(dst, src []byte, codec Codec) ([]byte, error) {
	size := StoredLen(codec, len(src))
	if size < 0 {
		return dst, ErrUnknownCodec
	}
	dst = slices.Grow(dst, size)
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		return appendGzipStored(dst, src), nil
	case CodecSnappy:
		return appendXerialStored(dst, src), nil
	case CodecLz4:
		return appendLz4Stored(dst, src), nil
	case CodecZstd:
		return appendZstdStored(dst, src), nil
	}
	return dst, ErrUnknownCodec
}

// appendZstdStored writes one zstd frame of Raw blocks (RFC 8878 3.1.1.2:
// a 3-byte little-endian block header, bit 0 Last_Block, bits 1-2
// Block_Type 0 (Raw), bits 3-23 Block_Size). Empty input is one empty
// last block.
func appendZstdStored(dst, src []byte) []byte {
	dst = append(dst, zstdStoredHeader[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(src)))
	for {
		n := min(len(src), storedZstdBlock)
		h := uint32(n) << 3
		if n == len(src) {
			h |= 1
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		dst = append(dst, src[:n]...)
		src = src[n:]
		if len(src) == 0 {
			return dst
		}
	}
}

// appendGzipStored writes one gzip member whose deflate stream is stored
// blocks (RFC 1951 3.2.4: a byte holding BFINAL and BTYPE 00, as blocks
// start byte-aligned here, then LEN and its complement NLEN, little-endian),
// then the CRC-32 (IEEE) and size of the input.
func appendGzipStored(dst, src []byte) []byte {
	sum := crc32.ChecksumIEEE(src)
	size := uint32(len(src))
	dst = append(dst, gzipStoredHeader[:]...)
	for {
		n := min(len(src), storedDeflate)
		var final byte
		if n == len(src) {
			final = 1
		}
		dst = append(dst, final, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, src[:n]...)
		src = src[n:]
		if len(src) == 0 {
			break
		}
	}
	dst = binary.LittleEndian.AppendUint32(dst, sum)
	return binary.LittleEndian.AppendUint32(dst, size)
}

// appendLz4Stored writes one LZ4 frame of uncompressed blocks and its end
// mark. Empty input is a frame with no blocks.
func appendLz4Stored(dst, src []byte) []byte {
	dst = append(dst, lz4StoredHeader[:]...)
	for len(src) > 0 {
		n := min(len(src), storedLz4Block)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n)|lz4Uncompressed)
		dst = append(dst, src[:n]...)
		src = src[n:]
	}
	return binary.LittleEndian.AppendUint32(dst, 0)
}

// snappyLiteralLen is the size of a raw snappy block holding n (1 to
// 2^16) bytes as one literal: the uncompressed length as a varint, the
// literal's tag (with 0, 1 or 2 extra length bytes), the bytes.
func snappyLiteralLen(n int) int {
	size := uvarintLen(uint64(n)) + 1 + n
	switch {
	case n > 256:
		size += 2
	case n > 60:
		size++
	}
	return size
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// appendXerialStored writes src xerial-framed (see appendXerial) in chunks
// of one snappy literal each (the snappy format: a literal's tag is 0b00
// with length-1 in the upper six bits below 60, or 60, 61 for one or two
// little-endian length-1 bytes after it). Empty input is the one-byte
// empty raw block, as appendXerial writes.
func appendXerialStored(dst, src []byte) []byte {
	if len(src) == 0 {
		return append(dst, 0)
	}
	dst = append(dst, xerialHeader...)
	for len(src) > 0 {
		n := min(len(src), storedXerialBlock)
		dst = binary.BigEndian.AppendUint32(dst, uint32(snappyLiteralLen(n)))
		dst = binary.AppendUvarint(dst, uint64(n))
		switch m := n - 1; {
		case m < 60:
			dst = append(dst, byte(m)<<2)
		case m < 256:
			dst = append(dst, 60<<2, byte(m))
		default:
			dst = append(dst, 61<<2, byte(m), byte(m>>8))
		}
		dst = append(dst, src[:n]...)
		src = src[n:]
	}
	return dst
}

// ZstdBlockTypes returns the block types (0 Raw, 1 RLE, 2 Compressed) of
// the zstd frames in b, in order; for tests and tools that check what a
// batch holds. Skippable frames are skipped.
func ZstdBlockTypes(b []byte) ([]int, error) {
	var types []int
	for len(b) > 0 {
		var h zstd.Header
		if err := h.Decode(b); err != nil {
			return types, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if h.Skippable {
			if len(b) < 8+int(h.SkippableSize) {
				return types, fmt.Errorf("%w: truncated skippable frame", ErrCorrupt)
			}
			b = b[8+h.SkippableSize:]
			continue
		}
		b = b[h.HeaderSize:]
		for {
			if len(b) < 3 {
				return types, fmt.Errorf("%w: truncated zstd block header", ErrCorrupt)
			}
			bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
			last, ty, size := bh&1 == 1, int(bh>>1&3), int(bh>>3)
			b = b[3:]
			if ty == 1 { // RLE: one byte stands for size bytes
				size = 1
			}
			if len(b) < size {
				return types, fmt.Errorf("%w: truncated zstd block", ErrCorrupt)
			}
			types = append(types, ty)
			b = b[size:]
			if last {
				break
			}
		}
		if h.HasCheckSum {
			if len(b) < 4 {
				return types, fmt.Errorf("%w: truncated zstd checksum", ErrCorrupt)
			}
			b = b[4:]
		}
	}
	return types, nil
}
