// Package termtest watches a terminal in tests as a person watches a
// screen: it reads the terminal in the background, waits for text to
// appear, types keys and waits for the program's exit.
package termtest

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Terminal is what a Screen watches: compute.Terminal and the drivers'
// terminals.
type Terminal interface {
	io.ReadWriter
	Wait() (int, error)
}

// A Screen keeps everything its terminal showed.
type Screen[T Terminal] struct {
	// Term is the terminal watched.
	Term T

	t       testing.TB
	timeout time.Duration

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every read
	buf     strings.Builder
	seen    int   // how much of buf Expect has consumed
	err     error // Read's final error
	done    chan struct{}
}

// New starts reading term. timeout bounds each wait of Expect and
// WaitExit: a guard against hangs that fails the test, not a speed limit.
func New[T Terminal](t testing.TB, term T, timeout time.Duration) *Screen[T] {
	s := &Screen[T]{Term: term, t: t, timeout: timeout, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := term.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.err = err
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// Expect waits until the output after the last match matches re, and
// returns the submatches.
func (s *Screen[T]) Expect(re string) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(s.timeout)
	for {
		s.mu.Lock()
		out := s.buf.String()[s.seen:]
		if loc := rx.FindStringSubmatchIndex(out); loc != nil {
			m := rx.FindStringSubmatch(out)
			s.seen += loc[1]
			s.mu.Unlock()
			return m
		}
		changed, err := s.changed, s.err
		s.mu.Unlock()
		if err != nil {
			s.t.Fatalf("the terminal ended (%v) before showing %q; it showed:\n%q", err, re, out)
		}
		select {
		case <-changed:
		case <-timeout:
			s.t.Fatalf("the terminal did not show %q within %v; it showed:\n%q", re, s.timeout, out)
		}
	}
}

// Type writes keystrokes.
func (s *Screen[T]) Type(keys string) {
	s.t.Helper()
	if _, err := s.Term.Write([]byte(keys)); err != nil {
		s.t.Fatalf("Write(%q): %v", keys, err)
	}
}

// Output returns everything the terminal showed so far.
func (s *Screen[T]) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Done is closed when reading has ended.
func (s *Screen[T]) Done() <-chan struct{} { return s.done }

// WaitExit waits for the program's exit code and for Read to end in
// io.EOF, failing the test otherwise.
func (s *Screen[T]) WaitExit() int {
	s.t.Helper()
	type result struct {
		code int
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		code, err := s.Term.Wait()
		ch <- result{code, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(s.timeout):
		s.mu.Lock()
		out := s.buf.String()[s.seen:]
		s.mu.Unlock()
		s.t.Fatalf("Wait did not return within %v; the terminal showed since the last match:\n%q", s.timeout, out)
	}
	if r.err != nil {
		s.t.Fatalf("Wait: %v", r.err)
	}
	select {
	case <-s.done:
	case <-time.After(s.timeout):
		s.t.Fatalf("Read did not end within %v of the exit", s.timeout)
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if !errors.Is(err, io.EOF) {
		s.t.Errorf("Read after the exit: %v, want io.EOF", err)
	}
	return r.code
}

// ReadEnd waits for reading to end and returns Read's final error.
func (s *Screen[T]) ReadEnd() error {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(s.timeout):
		s.t.Fatalf("Read still blocked after %v", s.timeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
