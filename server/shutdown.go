package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/computesdk-go/compute"
)

// shutdownGrace bounds the waits of Shutdown that follow cancellation:
// handlers returning, and each sandbox's Destroy.
const shutdownGrace = 30 * time.Second

// tracker counts running things and tells when none are left.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   []chan struct{}
}

// add counts one more, unless closed.
func (t *tracker) add() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		for _, ch := range t.zero {
			close(ch)
		}
		t.zero = nil
	}
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// idle returns a channel closed when the count is zero; with seal set,
// add refuses from now on.
func (t *tracker) idle(seal bool) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seal {
		t.closed = true
	}
	ch := make(chan struct{})
	if t.n == 0 {
		close(ch)
	} else {
		t.zero = append(t.zero, ch)
	}
	return ch
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops the server gracefully: new requests get 503, the
// requests in flight may finish until ctx is done, then they are
// cancelled (their processes killed); last, every sandbox the server
// created is destroyed, also when ctx is already done (each Destroy has
// its own 30 s bound). It returns an error when requests had to be
// cancelled or a sandbox failed to be destroyed. Later calls wait for the
// first and return its result. Stop the http.Server (its Shutdown) too:
// this Server does not own the listener.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.shutdownErr = s.shutdown(ctx)
		close(s.shutdownDone)
	})
	<-s.shutdownDone
	return s.shutdownErr
}

// Close is Shutdown without the grace: requests in flight are cancelled at
// once, then every sandbox the server created is destroyed.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		// Cancelling is what Close is for.
		err = errors.Join(unwrapJoined(err, context.Canceled)...)
	}
	return err
}

// unwrapJoined returns the errors joined in err, without those matching
// drop.
func unwrapJoined(err error, drop error) []error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, drop) {
				out = append(out, e)
			}
		}
		return out
	}
	if !errors.Is(err, drop) {
		out = append(out, err)
	}
	return out
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	var errs []error

	drained := s.requests.idle(true)
	select {
	case <-drained:
	default:
		select {
		case <-drained:
		case <-ctx.Done():
			n := s.requests.count()
			errs = append(errs, fmt.Errorf("server: cancelled %d requests still in flight: %w", n, ctx.Err()))
			s.log.Warn("server: shutdown: cancelling requests in flight", "requests", n)
			s.cancelBase()
			select {
			case <-drained:
			case <-time.After(shutdownGrace):
				s.log.Error("server: shutdown: requests still running after cancellation", "requests", s.requests.count())
			}
		}
	}
	s.cancelBase()

	s.mu.Lock()
	s.final = true
	list := make([]*entry, 0, len(s.sandboxes))
	for _, e := range s.sandboxes {
		list = append(list, e)
	}
	s.sandboxes = map[string]*entry{}
	s.mu.Unlock()
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(16)
	for _, e := range list {
		g.Go(func() error {
			if err := s.destroy(e.sb.ID()); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	if len(list) > 0 {
		s.log.Info("server: shutdown: destroyed sandboxes", "sandboxes", len(list))
	}

	select {
	case <-s.background.idle(false):
	case <-time.After(shutdownGrace):
		s.log.Error("server: shutdown: background work still running", "goroutines", s.background.count())
	}
	return errors.Join(errs...)
}

// destroy destroys a sandbox with a context of its own, so that it
// happens also after the request or the shutdown context ended. A sandbox
// the provider does not know is destroyed already.
func (s *Server) destroy(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.c.Destroy(ctx, id); err != nil && !errors.Is(err, compute.ErrNotFound) {
		s.log.Error("server: destroy sandbox", "sandbox", id, "error", err)
		return fmt.Errorf("server: destroy sandbox %s: %w", id, err)
	}
	return nil
}
