package celerybridge

import (
	"bytes"
	"compress/bzip2"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The body member of an envelope is the serialized payload, compressed when
// the compression header says so, then base64-encoded when
// properties.body_encoding is "base64" (kombu's default on Redis).

// Compression header values kombu writes. kombu registers zlib.compress under
// the name application/x-gzip (aliases "gzip", "zlib"): the data is a zlib
// stream, not a gzip file.
const (
	CompressionZlib  = "application/x-gzip"
	CompressionBzip2 = "application/x-bz2"
)

// rawBodyEncoding reports whether the body string is the payload itself:
// no body_encoding, or kombu 5.3+'s explicit "utf-8".
func rawBodyEncoding(enc string) bool {
	return enc == "" || strings.EqualFold(enc, "utf-8")
}

// decodeBody undoes the transport's body encoding, then the compression.
func decodeBody(token []byte, encoding, compression string) ([]byte, error) {
	var body []byte
	switch {
	case encoding == "base64":
		// Stricter than Python's b64decode, which silently discards stray
		// characters: only the standard alphabet, padding and line breaks.
		body = make([]byte, base64.StdEncoding.DecodedLen(len(token)))
		n, err := base64.StdEncoding.Decode(body, token)
		if err != nil {
			return nil, fmt.Errorf("body: %v: %w", err, ErrBadBase64)
		}
		body = body[:n]
	case rawBodyEncoding(encoding):
		body = append([]byte(nil), token...)
	default:
		return nil, fmt.Errorf("body_encoding %q: %w", encoding, ErrUnknownBodyEncoding)
	}
	if compression == "" {
		return body, nil
	}
	return decompress(body, compression)
}

// maxDecompressed bounds what a compressed body may expand to, so a
// decompression bomb is refused instead of exhausting memory. Redis caps a
// string at 512 MiB; no sane task message comes near.
const maxDecompressed = 256 << 20

func decompress(body []byte, compression string) ([]byte, error) {
	var r io.Reader
	switch compressionName(compression) {
	case CompressionZlib:
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("zlib body: %v: %w", err, ErrCompression)
		}
		defer zr.Close()
		r = zr
	case CompressionBzip2:
		r = bzip2.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("compression %q is not supported: %w", compression, ErrCompression)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecompressed+1))
	if err != nil {
		return nil, fmt.Errorf("%s body: %v: %w", compression, err, ErrCompression)
	}
	if len(out) > maxDecompressed {
		return nil, fmt.Errorf("%s body expands beyond %d bytes: %w", compression, maxDecompressed, ErrCompression)
	}
	return out, nil
}

// compressionName resolves kombu's aliases to the content type it registers.
func compressionName(c string) string {
	switch c {
	case CompressionZlib, "gzip", "zlib":
		return CompressionZlib
	case CompressionBzip2, "bzip2", "bzip":
		return CompressionBzip2
	}
	return c
}

func compress(body []byte, compression string) ([]byte, error) {
	switch compressionName(compression) {
	case CompressionZlib:
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	// Go's standard library has no bzip2 writer.
	return nil, fmt.Errorf("cannot write compression %q: %w", compression, ErrCompression)
}

// appendBody compresses and encodes a payload into the body string.
func appendBody(dst, body []byte, encoding, compression string) ([]byte, error) {
	if compression != "" {
		var err error
		if body, err = compress(body, compression); err != nil {
			return nil, err
		}
	}
	switch {
	case encoding == "base64":
		dst = append(dst, '"')
		n := len(dst)
		dst = append(dst, make([]byte, base64.StdEncoding.EncodedLen(len(body)))...)
		base64.StdEncoding.Encode(dst[n:], body)
		return append(dst, '"'), nil
	case rawBodyEncoding(encoding):
		// A JSON string holds text only; binary needs base64.
		if !utf8.Valid(body) {
			return nil, fmt.Errorf("binary body without base64 body_encoding: %w", ErrUnencodable)
		}
		return appendString(dst, string(body)), nil
	}
	return nil, fmt.Errorf("body_encoding %q: %w", encoding, ErrUnknownBodyEncoding)
}
