package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/errgroup"

	"github.com/computesdk-go/compute"
)

// session is what one MCP session owns: its sandboxes, the default one
// among them, and each sandbox's persistent interpreters.
type session struct {
	s  *Server
	ss *sdk.ServerSession
	id string // for logs

	defMu sync.Mutex // held while the default sandbox is made

	mu    sync.Mutex
	ended bool
	boxes []*box // in creation order
	def   *box

	endOnce sync.Once
	endErr  error
}

// box is a sandbox of a session.
type box struct {
	sb      *compute.Sandbox
	created time.Time
	image   string
	network compute.Network
	timeout time.Duration

	ctxMu    sync.Mutex
	contexts map[compute.Runtime]*compute.CodeContext // the persistent one per language
}

var sessionSeq atomic.Int64

func newSession(s *Server, ss *sdk.ServerSession) *session {
	id := ss.ID()
	if id == "" {
		id = fmt.Sprintf("local-%d", sessionSeq.Add(1))
	}
	return &session{s: s, ss: ss, id: id}
}

// errEnded is the answer to a call that arrives as its session ends.
var errEnded = errors.New("this MCP session has ended, and its sandboxes with it: start a new session")

// box returns the sandbox id names, or the default sandbox (made now
// when there is none yet) for "".
func (st *session) box(ctx context.Context, id string) (*box, error) {
	if id != "" {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.ended {
			return nil, errEnded
		}
		for _, b := range st.boxes {
			if b.sb.ID() == id {
				return b, nil
			}
		}
		return nil, st.unknown(id)
	}
	st.defMu.Lock()
	defer st.defMu.Unlock()
	st.mu.Lock()
	b := st.def
	st.mu.Unlock()
	if b != nil {
		return b, nil
	}
	b, err := st.create(ctx, *st.s.opts.Create)
	if err != nil {
		return nil, fmt.Errorf("creating this session's default sandbox: %w", err)
	}
	st.mu.Lock()
	st.def = b
	st.mu.Unlock()
	return b, nil
}

// unknown is the error for a sandbox id the session does not have. The
// caller holds st.mu.
func (st *session) unknown(id string) error {
	var ids []string
	for _, b := range st.boxes {
		ids = append(ids, b.sb.ID())
	}
	have := "it has none; omit sandbox_id to use the default sandbox, made on first use"
	if len(ids) > 0 {
		have = "it has " + strings.Join(ids, ", ")
	}
	return fmt.Errorf("no sandbox %q in this session (%s). A session sees only the sandboxes it created; list_sandboxes lists them", id, have)
}

// create creates a sandbox for the session.
func (st *session) create(ctx context.Context, opts compute.CreateOptions) (*box, error) {
	st.mu.Lock()
	ended := st.ended
	st.mu.Unlock()
	if ended {
		return nil, errEnded
	}
	sb, err := st.s.sbx.Create(ctx, &opts)
	if err != nil {
		return nil, err
	}
	b := &box{sb: sb, created: time.Now(), image: opts.Image, network: opts.Network, timeout: opts.Timeout, contexts: map[compute.Runtime]*compute.CodeContext{}}
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		st.destroyBox(b)
		return nil, errEnded
	}
	st.boxes = append(st.boxes, b)
	st.mu.Unlock()
	st.s.log.Info("mcp: sandbox created", "session", st.id, "sandbox", sb.ID())
	return b, nil
}

// forget drops b from the session; it reports whether b was there.
func (st *session) forget(b *box) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, x := range st.boxes {
		if x == b {
			st.boxes = append(st.boxes[:i], st.boxes[i+1:]...)
			if st.def == b {
				st.def = nil
			}
			return true
		}
	}
	return false
}

// destroy destroys a sandbox of the session by id.
func (st *session) destroy(ctx context.Context, id string) error {
	b, err := st.box(ctx, id)
	if err != nil {
		return err
	}
	if !st.forget(b) {
		return st.unknown(id)
	}
	return st.destroyBox(b)
}

// destroyBox destroys b's sandbox, on a context of its own: it happens
// also when the call or the session is over.
func (st *session) destroyBox(b *box) error {
	ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
	defer cancel()
	if err := st.s.sbx.Destroy(ctx, b.sb); err != nil && !errors.Is(err, compute.ErrNotFound) {
		st.s.log.Error("mcp: destroying a sandbox", "session", st.id, "sandbox", b.sb.ID(), "error", err)
		return fmt.Errorf("destroying sandbox %s: %w", b.sb.ID(), err)
	}
	st.s.log.Info("mcp: sandbox destroyed", "session", st.id, "sandbox", b.sb.ID())
	return nil
}

// list returns the session's sandboxes, oldest first, and the default.
func (st *session) list() ([]*box, *box) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*box(nil), st.boxes...), st.def
}

// end refuses new sandboxes and destroys those the session has; later
// calls wait for the first and return its result.
func (st *session) end() error {
	st.endOnce.Do(func() {
		st.mu.Lock()
		st.ended = true
		boxes := st.boxes
		st.boxes, st.def = nil, nil
		st.mu.Unlock()
		var mu sync.Mutex
		var errs []error
		var g errgroup.Group
		g.SetLimit(8)
		for _, b := range boxes {
			g.Go(func() error {
				if err := st.destroyBox(b); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				return nil
			})
		}
		g.Wait()
		st.endErr = errors.Join(errs...)
		st.s.log.Info("mcp: session closed", "session", st.id, "sandboxes_destroyed", len(boxes))
	})
	return st.endErr
}

// gone turns the error of an operation on b into what the model is told:
// when the sandbox itself has ended, it is dropped from the session and
// the message says what that means.
func (st *session) gone(b *box, err error) error {
	if !errors.Is(err, compute.ErrNotFound) && !errors.Is(err, compute.ErrStopped) {
		return err
	}
	st.mu.Lock()
	wasDefault := st.def == b
	st.mu.Unlock()
	if !st.forget(b) {
		return err
	}
	// Whatever is left of it goes too.
	st.destroyBox(b)
	next := "create_sandbox makes a new one"
	if wasDefault {
		next = "call again without sandbox_id for a fresh default sandbox"
	}
	why := "it was destroyed"
	if b.timeout > 0 && time.Since(b.created) >= b.timeout {
		why = fmt.Sprintf("its lifetime of %v ran out", b.timeout)
	}
	return fmt.Errorf("sandbox %s has ended (%s): its files, processes and variables are gone; %s (%v)", b.sb.ID(), why, next, err)
}

// codeContext returns the interpreter a run_code call runs in: the one
// named id, or b's persistent one for rt (started now when there is none,
// or when the last one died).
func (st *session) codeContext(ctx context.Context, b *box, rt compute.Runtime, id string) (*compute.CodeContext, error) {
	if id != "" {
		list, err := b.sb.CodeContexts(ctx)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, cc := range list {
			if cc.ID() == id {
				if rt != "" && cc.Info().Runtime != rt {
					return nil, fmt.Errorf("context %s runs %s, not %s: omit language, or omit context_id", id, languageOf(cc.Info().Runtime), languageOf(rt))
				}
				return cc, nil
			}
			ids = append(ids, cc.ID())
		}
		return nil, fmt.Errorf("no code context %q in sandbox %s (it has: %s); omit context_id to use the sandbox's persistent one for the language", id, b.sb.ID(), strings.Join(ids, ", "))
	}
	if rt == "" {
		rt = compute.Python
	}
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	if cc := b.contexts[rt]; cc != nil {
		return cc, nil
	}
	cc, err := b.sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: rt})
	if err != nil {
		return nil, fmt.Errorf("starting a %s interpreter: %w", languageOf(rt), err)
	}
	b.contexts[rt] = cc
	return cc, nil
}

// dropContext forgets b's persistent interpreter cc (it died), so that
// the next call starts a fresh one.
func (b *box) dropContext(cc *compute.CodeContext) {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	for rt, x := range b.contexts {
		if x == cc {
			delete(b.contexts, rt)
			ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
			cc.Close(ctx)
			cancel()
		}
	}
}
