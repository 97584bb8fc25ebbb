package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// Replies are written as a stream: what a reply carries in bulk (a
// command's output, a file, a directory listing) is encoded straight to
// the connection through a small buffer, never built whole in memory, so a
// request holds the raw bytes it returns and not their JSON form (which is
// up to 6 times larger: a NUL byte is "\u0000").

// replyBuffer is how much of a reply is held before it is sent. A reply
// that fits is sent with a Content-Length; a longer one is streamed
// (chunked).
const replyBuffer = 64 << 10

// reply writes one JSON reply.
type reply struct {
	w         http.ResponseWriter
	status    int
	buf       []byte
	committed bool // the header went out; buf is written as it fills
	err       error
	scratch   bytes.Buffer
	enc       *json.Encoder
}

func newReply(w http.ResponseWriter, status int) *reply {
	r := &reply{w: w, status: status, buf: make([]byte, 0, 4096)}
	r.enc = json.NewEncoder(&r.scratch)
	r.enc.SetEscapeHTML(false)
	return r
}

func (r *reply) raw(s string) {
	if len(r.buf)+len(s) > replyBuffer {
		r.flushBuf()
	}
	r.buf = append(r.buf, s...)
}

// bytes writes p as it is; a long p goes straight to the connection.
func (r *reply) bytes(p []byte) {
	if len(r.buf)+len(p) > replyBuffer {
		r.flushBuf()
		if len(p) >= replyBuffer {
			if r.err == nil {
				_, r.err = r.w.Write(p)
			}
			return
		}
	}
	r.buf = append(r.buf, p...)
}

func (r *reply) flushBuf() {
	if !r.committed {
		r.header(false)
	}
	if r.err == nil && len(r.buf) > 0 {
		_, r.err = r.w.Write(r.buf)
	}
	r.buf = r.buf[:0]
}

func (r *reply) header(withLength bool) {
	h := r.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if withLength {
		h.Set("Content-Length", strconv.Itoa(len(r.buf)))
	} else {
		h.Del("Content-Length")
	}
	r.w.WriteHeader(r.status)
	r.committed = true
}

// value writes v, a small value, as JSON.
func (r *reply) value(v any) {
	r.scratch.Reset()
	if err := r.enc.Encode(v); err != nil {
		// Only a bug gets here: every value written is plain data.
		panic("server: encoding a reply: " + err.Error())
	}
	b := r.scratch.Bytes()
	r.bytes(b[:len(b)-1]) // without Encode's newline
}

// str writes b as a JSON string (with its quotes), streamed.
func (r *reply) str(b []byte) {
	r.raw(`"`)
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		var esc string
		size := 1
		if c < utf8.RuneSelf {
			esc = asciiEscape(c)
		} else {
			ru, n := utf8.DecodeRune(b[i:])
			size = n
			switch {
			case ru == utf8.RuneError && n == 1:
				esc = `\ufffd`
			case ru == '\u2028':
				esc = `\u2028`
			case ru == '\u2029':
				esc = `\u2029`
			default:
				i += n
				continue
			}
		}
		r.bytes(b[start:i])
		r.raw(esc)
		i += size
		start = i
	}
	r.bytes(b[start:])
	r.raw(`"`)
}

// base64 writes b as a JSON string in standard base64, streamed.
func (r *reply) base64(b []byte) {
	r.raw(`"`)
	const chunk = 48 << 10 // a multiple of 3: no padding inside
	out := make([]byte, base64.StdEncoding.EncodedLen(min(len(b), chunk)))
	for len(b) > 0 {
		n := min(len(b), chunk)
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode(out[:m], b[:n])
		r.bytes(out[:m])
		b = b[n:]
	}
	r.raw(`"`)
}

// end finishes the reply: sent whole with its length when it fits in the
// buffer, the rest of the stream otherwise.
func (r *reply) end() {
	r.buf = append(r.buf, '\n')
	if !r.committed {
		r.header(true)
	}
	r.flushBuf()
}

const hexDigits = "0123456789abcdef"

// asciiEscape is the JSON form of an ASCII byte that needs one.
func asciiEscape(c byte) string {
	switch c {
	case '"':
		return `\"`
	case '\\':
		return `\\`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	}
	return `\u00` + string(hexDigits[c>>4]) + string(hexDigits[c&0xf])
}

// jsonLen is the length of b encoded as the content of a JSON string
// (without the quotes), as reply.str writes it.
func jsonLen(b []byte) int {
	return fitJSON(b, -1)
}

// fitJSON returns how many bytes of b, cut at a character boundary, fit in
// limit bytes once encoded as the content of a JSON string. With a
// negative limit it returns the encoded length of all of b.
func fitJSON(b []byte, limit int) int {
	n := 0
	for i := 0; i < len(b); {
		c := b[i]
		w, size := 1, 1
		switch {
		case c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf:
		case c < utf8.RuneSelf:
			w = len(asciiEscape(c))
		default:
			ru, sz := utf8.DecodeRune(b[i:])
			size, w = sz, sz
			if ru == utf8.RuneError && sz == 1 || ru == '\u2028' || ru == '\u2029' {
				w = 6
			}
		}
		if limit >= 0 && n+w > limit {
			return i
		}
		n += w
		i += size
	}
	if limit < 0 {
		return n
	}
	return len(b)
}

// capture keeps the start of a command's output, at most max bytes, for a
// JSON reply: the rest is dropped (and counted) as it arrives, so a
// command that prints without end costs the server max bytes, no more.
// Writes never fail, so the command is never stopped by its output.
type capture struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int64
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	if room := c.max - len(c.buf); len(p) > room {
		c.dropped += int64(len(p) - room)
		p = p[:room]
	}
	if len(p) == 0 {
		return n, nil
	}
	if cap(c.buf)-len(c.buf) < len(p) {
		// Grow within max: append's doubling could reserve twice of it.
		grown := make([]byte, len(c.buf), min(max(2*cap(c.buf), len(c.buf)+len(p), 4096), c.max))
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, p...)
	return n, nil
}

// take returns the longest start of the output whose JSON form fits in
// limit bytes, and whether anything was left out.
func (c *capture) take(limit int) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := fitJSON(c.buf, limit)
	return c.buf[:n], n < len(c.buf) || c.dropped > 0
}

// listingEntryBytes bounds what a directory entry takes in a reply besides
// its name and path: the keys, size, mode, time and punctuation.
const listingEntryBytes = 160

// checkListing refuses, with 413, a directory listing whose reply would
// be larger than MaxOutputBytes.
func (s *Server) checkListing(path string, list []compute.FileInfo) error {
	n := 0
	for i := range list {
		n += listingEntryBytes + jsonLen([]byte(list[i].Name)) + jsonLen([]byte(list[i].Path))
		if n > s.opts.MaxOutputBytes {
			return errorf(wire.CodeTooLarge,
				"the listing of %s (%d entries) is larger than the %d bytes a reply holds; list it in parts with a command (find, ls) and read the output",
				path, len(list), s.opts.MaxOutputBytes)
		}
	}
	return nil
}
