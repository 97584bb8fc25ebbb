package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"unicode/utf8"
)

// FuzzJSONString checks the streamed JSON string writer against
// encoding/json: the same string once decoded, the length jsonLen
// predicts, and fitJSON's prefixes cut at character boundaries within
// their limit (what keeps a reply within MaxOutputBytes, issue 9,
// finding 3).
//
//	go test ./server -run '^$' -fuzz FuzzJSONString -fuzztime 20s
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "\xff", "é", "\u2028\u2029", `"\`, "a\xe2\x82", "\t\n\r\b\f\x7f", "日本語", "\xed\xa0\x80"} {
		f.Add([]byte(s), 5)
	}
	f.Add(bytes.Repeat([]byte{0}, replyBuffer+7), replyBuffer)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		rec := httptest.NewRecorder()
		r := newReply(rec, 200)
		r.str(b)
		r.end()
		out := bytes.TrimSuffix(rec.Body.Bytes(), []byte("\n"))
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("str(%q) = %q: not a JSON string: %v", b, out, err)
		}
		want, _ := json.Marshal(string(b))
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("str(%q) decodes to %q; encoding/json's to %q", b, got, wantS)
		}
		if n := jsonLen(b); n != len(out)-2 {
			t.Fatalf("jsonLen(%q) = %d; the string written is %d bytes inside its quotes", b, n, len(out)-2)
		}
		if rec.Header().Get("Content-Length") != "" && rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
			t.Fatalf("Content-Length %s for %d bytes", rec.Header().Get("Content-Length"), rec.Body.Len())
		}

		if limit < 0 {
			limit = -(limit + 1)
		}
		limit %= 6*len(b) + 8
		n := fitJSON(b, limit)
		if n < 0 || n > len(b) || jsonLen(b[:n]) > limit {
			t.Fatalf("fitJSON(%q, %d) = %d: over the limit (%d bytes)", b, limit, n, jsonLen(b[:max(0, min(n, len(b)))]))
		}
		if n < len(b) {
			// Cut at a boundary: the next character would not fit, and the
			// prefix encodes as the start of the whole.
			_, size := utf8.DecodeRune(b[n:])
			if jsonLen(b[:n+size]) <= limit {
				t.Fatalf("fitJSON(%q, %d) = %d; one more character fits", b, limit, n)
			}
			var whole, part bytes.Buffer
			rw, rp := newReply(httptest.NewRecorder(), 200), newReply(httptest.NewRecorder(), 200)
			rw.str(b)
			rp.str(b[:n])
			whole.Write(rw.buf)
			part.Write(rp.buf)
			if rw.committed || rp.committed {
				return // long strings went out already; checked above
			}
			if !bytes.HasPrefix(whole.Bytes(), bytes.TrimSuffix(part.Bytes(), []byte(`"`))) {
				t.Fatalf("fitJSON(%q, %d) = %d cuts inside a character: %q is not the start of %q", b, limit, n, part.Bytes(), whole.Bytes())
			}
		}
	})
}

// TestCaptureBounded checks that a capture holds at most its max however
// much is written, and counts what it dropped.
func TestCaptureBounded(t *testing.T) {
	c := &capture{max: 10000}
	chunk := bytes.Repeat([]byte{0}, 4096)
	for range 1000 {
		if n, err := c.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v; want all of it taken, no error", n, err)
		}
	}
	if len(c.buf) != 10000 || cap(c.buf) > 10000 || c.dropped != 4096*1000-10000 {
		t.Errorf("capture holds %d (capacity %d), dropped %d; want 10000, at most 10000, %d", len(c.buf), cap(c.buf), c.dropped, 4096*1000-10000)
	}
	b, cut := c.take(600)
	if len(b) != 100 || !cut {
		t.Errorf("take(600) of NULs = %d bytes, cut %v; want 100 (6 bytes each), cut", len(b), cut)
	}
}
