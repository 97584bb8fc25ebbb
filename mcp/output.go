package mcp

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// What a tool gives back to the model is text, capped at Options.MaxOutput
// characters per call. A stream is captured head and tail (the start says
// what ran, the end how it ended: the error, the last lines); what is cut
// from the middle is replaced with a note that says how much, so the model
// knows its view is partial and what to do about it.

// capture is an io.Writer that keeps the first and the last limit bytes of
// what is written to it, and counts all of it.
type capture struct {
	mu    sync.Mutex
	limit int
	head  []byte
	tail  []byte // a ring of at most limit bytes, oldest at pos once full
	pos   int
	total int64
}

func newCapture(limit int) *capture { return &capture{limit: limit} }

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	c.total += int64(n)
	if room := c.limit - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) >= c.limit {
		c.tail = append(c.tail[:0], p[len(p)-c.limit:]...)
		c.pos = 0
		return n, nil
	}
	for len(p) > 0 {
		if len(c.tail) < c.limit {
			k := min(c.limit-len(c.tail), len(p))
			c.tail = append(c.tail, p[:k]...)
			p = p[k:]
			continue
		}
		k := copy(c.tail[c.pos:], p)
		c.pos = (c.pos + k) % c.limit
		p = p[k:]
	}
	return n, nil
}

// stream returns what was captured: the text kept and the number of bytes
// dropped from its middle.
func (c *capture) stream() (text string, dropped int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	b.Write(c.head)
	b.Write(c.tail[c.pos:])
	b.Write(c.tail[:c.pos])
	return b.String(), c.total - int64(len(c.head)+len(c.tail))
}

// piece is one part of a tool's text answer (stdout, stderr, a file).
type piece struct {
	name    string // for the note: "stdout", "the file"
	text    string
	dropped int64 // bytes already cut from the middle of text
}

// fit cuts the pieces so that together they hold at most max characters
// (max < 0: no cap), sharing the room fairly (a piece that needs less than
// its share leaves the rest to the others), and marks each cut with a note.
// It returns the pieces' texts in order and whether anything was cut.
func fit(max int, pieces ...piece) ([]string, bool) {
	out := make([]string, len(pieces))
	sizes := make([]int, len(pieces))
	for i, p := range pieces {
		p.text = strings.ToValidUTF8(p.text, "\uFFFD")
		pieces[i] = p
		sizes[i] = utf8.RuneCountInString(p.text)
	}
	shares := make([]int, len(pieces))
	if max < 0 {
		copy(shares, sizes)
	} else {
		// Water-filling: the smallest pieces first, each given at most an
		// equal share of what is left.
		order := make([]int, len(pieces))
		for i := range order {
			order[i] = i
		}
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && sizes[order[j]] < sizes[order[j-1]]; j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
		left := max
		for k, i := range order {
			share := left / (len(order) - k)
			shares[i] = min(sizes[i], share)
			left -= shares[i]
		}
	}
	cut := false
	for i, p := range pieces {
		if sizes[i] <= shares[i] && p.dropped == 0 {
			out[i] = p.text
			continue
		}
		cut = true
		r := []rune(p.text)
		keep := min(shares[i], len(r))
		headN := keep / 2
		tailN := keep - headN
		head, tail := string(r[:headN]), string(r[len(r)-tailN:])
		cutBytes := p.dropped + int64(len(p.text)-len(head)-len(tail))
		all := p.dropped + int64(len(p.text))
		out[i] = head + fmt.Sprintf("\n[... %d bytes of %s cut here (%d in all): the answer holds at most %d characters; to see more, write it to a file and read parts of it (head, tail, grep) ...]\n", cutBytes, p.name, all, max) + tail
	}
	return out, cut
}

// ansi matches terminal color and cursor sequences, which IPython puts in
// tracebacks: noise for a model.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	return ansi.ReplaceAllString(s, "")
}
