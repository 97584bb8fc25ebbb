package compute

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/internal/interpreter"
)

// This file is the generic code context: an interpreter program
// (internal/interpreter) started in the sandbox with driver.Sandbox.Start,
// speaking its protocol over the process's stdin and stdout. Every
// provider gets contexts this way; on Modal a warm cell is one round trip
// on the exec's streams.

// contextSet holds the generic contexts of one Compute, by sandbox.
type contextSet struct {
	mu   sync.Mutex
	sets map[sandboxKey]map[string]*execContext
}

// sandboxKey names a sandbox within a Compute, whose providers have
// distinct names.
type sandboxKey struct{ provider, id string }

func newContextSet() *contextSet {
	return &contextSet{sets: map[sandboxKey]map[string]*execContext{}}
}

// start starts a context in sb; opts has been validated.
func (cs *contextSet) start(ctx context.Context, sb *Sandbox, opts *CodeContextOptions) (*execContext, error) {
	if cs == nil {
		return nil, fmt.Errorf("compute: code contexts need a sandbox from Compute.Create, Get or List: %w", ErrUnsupported)
	}
	c := &execContext{
		set:     cs,
		key:     sandboxKey{sb.provider.Name(), sb.ps.ID()},
		sb:      sb.ps,
		opts:    *opts,
		id:      "ctx-" + strings.ToLower(rand.Text()[:16]),
		created: time.Now(),
	}
	c.opts.Env = cloneEnv(opts.Env)
	r, err := c.launch(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = r
	cs.mu.Lock()
	set := cs.sets[c.key]
	if set == nil {
		set = map[string]*execContext{}
		cs.sets[c.key] = set
	}
	set[c.id] = c
	cs.mu.Unlock()
	return c, nil
}

// list returns the live contexts of a sandbox, oldest first.
func (cs *contextSet) list(p Provider, id string) []driver.CodeContext {
	if cs == nil {
		return nil
	}
	cs.mu.Lock()
	var all []*execContext
	for _, c := range cs.sets[sandboxKey{p.Name(), id}] {
		all = append(all, c)
	}
	cs.mu.Unlock()
	slices.SortFunc(all, func(a, b *execContext) int {
		if n := a.created.Compare(b.created); n != 0 {
			return n
		}
		return strings.Compare(a.id, b.id)
	})
	out := make([]driver.CodeContext, len(all))
	for i, c := range all {
		out[i] = c
	}
	return out
}

// drop forgets the contexts of a destroyed sandbox and stops what is left
// of their interpreters.
func (cs *contextSet) drop(p Provider, id string) {
	if cs == nil {
		return
	}
	key := sandboxKey{p.Name(), id}
	cs.mu.Lock()
	set := cs.sets[key]
	delete(cs.sets, key)
	cs.mu.Unlock()
	for _, c := range set {
		c.shut()
	}
}

func (cs *contextSet) remove(c *execContext) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if set := cs.sets[c.key]; set != nil {
		delete(set, c.id)
		if len(set) == 0 {
			delete(cs.sets, c.key)
		}
	}
}

// execContext is a generic code context.
type execContext struct {
	set     *contextSet
	key     sandboxKey
	sb      driver.Sandbox
	opts    CodeContextOptions
	id      string
	created time.Time

	mu     sync.Mutex
	cur    *interp // the running interpreter; replaced by Restart
	closed bool
}

var _ driver.CodeContext = (*execContext)(nil)

// interp is one interpreter process and the session with it.
type interp struct {
	proc   driver.Process
	sess   *interpreter.Session
	ready  *interpreter.Ready
	stdout *io.PipeReader // the protocol from the program
	stderr *cappedBuffer  // the program's own stderr (user code's is not here)

	exited   chan struct{} // closed when proc.Wait returned
	exitCode int
	waitErr  error
}

// programStderr is how much of the interpreter program's own stderr is
// kept to explain why it died; user code never writes there.
const programStderr = 16 << 10

// launch starts an interpreter and waits until it is ready.
func (c *execContext) launch(ctx context.Context) (*interp, error) {
	argv, err := interpreter.Command(string(c.opts.Runtime))
	if err != nil {
		return nil, fmt.Errorf("compute: %w: %w", err, ErrInvalid)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	r := &interp{stdout: outR, stderr: &cappedBuffer{max: programStderr}, exited: make(chan struct{})}
	proc, err := c.sb.Start(ctx, &driver.ExecRequest{
		Argv:   argv,
		Env:    c.opts.Env,
		Dir:    c.opts.Dir,
		Stdin:  inR,
		Stdout: outW,
		Stderr: r.stderr,
	})
	if err != nil {
		inW.Close()
		outR.Close()
		if errors.Is(err, ErrCommandNotFound) {
			return nil, fmt.Errorf("compute: a %s code context needs %s in the sandbox: %w", c.opts.Runtime, argv[0], err)
		}
		return nil, fmt.Errorf("compute: starting a %s code context: %w", c.opts.Runtime, err)
	}
	r.proc = proc
	r.sess = interpreter.NewSession(inW, outR)
	go func() {
		r.exitCode, r.waitErr = proc.Wait()
		outW.Close() // the session sees the end of the protocol
		inR.Close()  // and its writes fail rather than block
		close(r.exited)
	}()
	ready, err := r.sess.Ready(ctx)
	if err != nil {
		r.kill()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("compute: starting a %s code context: %w", c.opts.Runtime, ctx.Err())
		}
		return nil, c.died(r, "could not start", err)
	}
	r.ready = ready
	return r, nil
}

// kill stops the interpreter process and unblocks everything waiting on
// it. It does not wait.
func (r *interp) kill() {
	r.sess.Close()
	r.proc.Kill()
	// A program that stopped reading or a session that stopped reading
	// must not leave the provider blocked on a pipe.
	r.stdout.CloseWithError(ErrContextDied)
}

// diedWait is how long died waits for the process's exit code, to say how
// the interpreter ended.
const diedWait = 2 * time.Second

// died describes the end of an interpreter as an error wrapping
// ErrContextDied.
func (c *execContext) died(r *interp, what string, cause error) error {
	t := time.NewTimer(diedWait)
	defer t.Stop()
	select {
	case <-r.exited:
	case <-t.C:
		return fmt.Errorf("compute: code context %s: the interpreter %s: %w (%v)", c.id, what, ErrContextDied, cause)
	}
	how := fmt.Sprintf("exited with code %d", r.exitCode)
	switch {
	case r.waitErr != nil:
		// The provider knows why (out of memory, the sandbox stopped):
		// both its error and ErrContextDied match.
		return fmt.Errorf("compute: code context %s: the interpreter %s: %w (%w; Restart starts a new one)", c.id, what, r.waitErr, ErrContextDied)
	case r.exitCode == 137:
		how = "was killed (exit code 137: out of memory, or SIGKILL)"
	case r.exitCode > 128:
		how = fmt.Sprintf("was killed by signal %d", r.exitCode-128)
	}
	msg := strings.TrimSpace(r.stderr.String())
	if msg != "" {
		msg = ": " + lastLines(msg, 5)
	}
	return fmt.Errorf("compute: code context %s: the interpreter %s: it %s%s; Restart starts a new one: %w", c.id, what, how, msg, ErrContextDied)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *execContext) Info() CodeContextInfo {
	c.mu.Lock()
	r := c.cur
	c.mu.Unlock()
	info := CodeContextInfo{ID: c.id, Runtime: c.opts.Runtime, Dir: c.opts.Dir, CreatedAt: c.created}
	if r != nil && r.ready != nil {
		info.Version, info.Rich = r.ready.Version, r.ready.Rich
	}
	return info
}

func (c *execContext) current() (*interp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("compute: code context %s is closed: %w", c.id, ErrNotFound)
	}
	return c.cur, nil
}

func (c *execContext) Run(ctx context.Context, code string, opts *CellOptions) (*Execution, error) {
	r, err := c.current()
	if err != nil {
		return nil, err
	}
	runCtx := ctx
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	ex, err := r.sess.Run(runCtx, code, &interpreter.RunOptions{
		Stdout:    opts.Stdout,
		Stderr:    opts.Stderr,
		OnResult:  opts.OnResult,
		MaxOutput: opts.MaxOutput,
	})
	if err == nil {
		return ex, nil
	}
	timedOut := opts.Timeout > 0 && ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded)
	if errors.Is(err, interpreter.ErrDied) {
		r.kill()
		var derr error
		switch {
		case errors.Is(err, interpreter.ErrNotStopped) && runCtx.Err() != nil:
			// The session gave up on this cell, which ignored its
			// interrupt, and the kill above is ours: say that, not how
			// it ended.
			derr = fmt.Errorf("compute: code context %s: the cell did not stop when interrupted (%w), so its interpreter was stopped; Restart starts a new one: %w", c.id, runCtx.Err(), ErrContextDied)
		case errors.Is(err, interpreter.ErrNotStopped):
			// An earlier cell's: this one never ran.
			derr = fmt.Errorf("compute: code context %s: its interpreter was stopped when an earlier cell did not stop when interrupted; Restart starts a new one: %w", c.id, ErrContextDied)
		default:
			derr = c.died(r, "died during the cell", err)
		}
		if c.isClosed() {
			derr = fmt.Errorf("compute: code context %s was closed during the cell: %w", c.id, ErrContextDied)
		}
		if timedOut {
			derr = fmt.Errorf("%w (the cell ran past its %v timeout: %w)", derr, opts.Timeout, ErrTimeout)
		}
		return ex, derr
	}
	if timedOut {
		return ex, fmt.Errorf("compute: cell ran past its %v timeout and was interrupted; the context keeps its state: %w", opts.Timeout, ErrTimeout)
	}
	return ex, err
}

func (c *execContext) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *execContext) Restart(ctx context.Context) error {
	if _, err := c.current(); err != nil {
		return err
	}
	r, err := c.launch(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	old := c.cur
	if c.closed {
		c.mu.Unlock()
		r.kill()
		return fmt.Errorf("compute: code context %s is closed: %w", c.id, ErrNotFound)
	}
	c.cur = r
	c.mu.Unlock()
	old.kill()
	return nil
}

func (c *execContext) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	r := c.cur
	c.mu.Unlock()
	c.set.remove(c)
	r.kill()
	select {
	case <-r.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shut stops the context of a destroyed sandbox.
func (c *execContext) shut() {
	c.mu.Lock()
	c.closed = true
	r := c.cur
	c.mu.Unlock()
	r.kill()
}

func cloneEnv(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	return out
}
