package modal

import (
	"context"
	"maps"
	"reflect"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

// The warm pool of Config.Prestart.
//
// A pooled sandbox is an ordinary Modal sandbox made with the provider's
// default options, waiting. Three things keep one from being handed out
// when it should not be:
//
//   - age: it was started with a lifetime poolMaxAge longer than the
//     default and is replaced once it has waited poolMaxAge, so the one a
//     Create gets has at least the default lifetime ahead of it;
//   - death: a watcher holds Modal's long-poll wait on it, and drops it
//     from the pool as soon as Modal says it has ended;
//   - options: only a Create whose options are exactly the defaults gets
//     one (matches).
//
// Its tags are the provider's, minus tagManaged (which List filters on)
// plus tagPool, so that no List, in this process or another, shows a
// sandbox nobody asked for; a Create that takes one sets the real tags in
// the background, and List waits for those updates.

// poolMaxAge is how long a pooled sandbox waits before it is replaced,
// and how much longer than the default its lifetime is (a variable for
// the tests).
var poolMaxAge = time.Minute

// refillDelay is how long after a Create took a pooled sandbox its
// replacement is started, so that starting it does not compete with the
// caller's first commands for this machine (the emulator makes its
// sandboxes here) and for the connection to Modal. A sandbox takes longer
// than that to start on Modal anyway.
const refillDelay = 200 * time.Millisecond

// tagPool marks a waiting pooled sandbox (in Modal's dashboard too).
const tagPool = "computesdk-pool"

type pool struct {
	p      *Provider // the provider whose options the pool's sandboxes have
	want   int
	maxAge time.Duration // poolMaxAge when the pool was made

	// fillCtx bounds the creates of the pool; Close cancels it when they
	// take longer than cleanupTimeout. watchCtx ends every watcher.
	fillCtx     context.Context
	fillCancel  context.CancelFunc
	watchCtx    context.Context
	watchCancel context.CancelFunc
	wg          sync.WaitGroup // fills, watchers, replacements

	mu      sync.Mutex
	closed  bool
	ready   []*pooled // oldest first
	filling int       // creates in flight
	// later is the refill that take started, nil when none is pending.
	later *time.Timer
}

// pooled is one waiting sandbox.
type pooled struct {
	sb   *modalsdk.Sandbox
	m    *meta
	tags map[string]string // its tags once handed out
	// stop ends its watcher; retire is its replacement timer.
	stop   context.CancelFunc
	retire *time.Timer
}

func newPool(p *Provider, want int) *pool {
	pl := &pool{p: p, want: want, maxAge: poolMaxAge}
	pl.fillCtx, pl.fillCancel = context.WithCancel(context.WithValue(context.Background(), quietKey{}, true))
	pl.watchCtx, pl.watchCancel = context.WithCancel(context.Background())
	return pl
}

// matches reports whether a Create on p with opts may take a pooled
// sandbox: p has the pool's options and opts sets nothing (its Provider,
// which only chooses the provider, aside). Any field set, including one
// added to CreateOptions later, means a sandbox of its own.
func (pl *pool) matches(p *Provider, opts *driver.CreateOptions) bool {
	if p != pl.p && !reflect.DeepEqual(p.opts, pl.p.opts) {
		return false
	}
	v := reflect.ValueOf(opts).Elem()
	t := v.Type()
	for i := range v.NumField() {
		if t.Field(i).Name == "Provider" {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Map, reflect.Slice:
			if f.Len() > 0 {
				return false
			}
		default:
			if !f.IsZero() {
				return false
			}
		}
	}
	return true
}

// take hands out the oldest waiting sandbox, registered as a handle with
// its tags being set, and starts its replacement refillDelay later; nil
// when none waits (then it refills at once).
func (pl *pool) take() *Sandbox {
	pl.mu.Lock()
	if pl.closed || len(pl.ready) == 0 {
		pl.mu.Unlock()
		pl.refill()
		return nil
	}
	e := pl.ready[0]
	pl.ready = pl.ready[1:]
	if pl.later == nil {
		pl.later = time.AfterFunc(refillDelay, func() {
			pl.mu.Lock()
			pl.later = nil
			pl.mu.Unlock()
			pl.refill()
		})
	}
	pl.mu.Unlock()
	e.stop()
	e.retire.Stop()
	s := pl.p.s
	h := s.newHandle(e.sb, e.m)
	if h == nil {
		// Closed meanwhile: Close terminates what the pool holds, and
		// this one is no longer in it.
		pl.terminate(e)
		return nil
	}
	if h.sb != e.sb {
		// A handle for this id was made already (Get with an id nobody
		// was given): the same sandbox, through that handle.
		e.sb.Detach()
	}
	s.retag(h, e.tags)
	return h
}

// refill starts the creates that bring the pool to its size. Every
// wg.Add of the pool happens under mu while it is open, so that none
// comes after Close has begun to wait.
func (pl *pool) refill() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for !pl.closed && len(pl.ready)+pl.filling < pl.want {
		pl.filling++
		pl.wg.Go(pl.fill)
	}
}

// fill starts one pooled sandbox. A failure is logged and not retried:
// the pool stays short until the next Create, which starts its own
// sandbox (and reports the same failure, if it persists) and refills.
func (pl *pool) fill() {
	e, err := pl.start()
	pl.mu.Lock()
	pl.filling--
	closed := pl.closed
	if err == nil && !closed {
		wctx, stop := context.WithCancel(pl.watchCtx)
		e.stop = stop
		e.retire = time.AfterFunc(pl.maxAge, func() { pl.replace(e) })
		pl.ready = append(pl.ready, e)
		pl.wg.Go(func() { pl.watch(e, wctx) })
	}
	pl.mu.Unlock()
	switch {
	case err != nil:
		if pl.fillCtx.Err() == nil {
			pl.p.s.log.Warn("starting a prestarted sandbox failed; the pool stays short until the next Create", "error", err)
		}
	case closed:
		pl.terminate(e)
	}
}

// start creates a sandbox with the pool's options, its lifetime longer by
// maxAge (within Modal's maximum), tagged as pooled.
func (pl *pool) start() (*pooled, error) {
	p := pl.p
	params, m, err := p.createParams(&driver.CreateOptions{})
	if err != nil {
		return nil, err
	}
	life := min(params.Timeout+pl.maxAge, MaxTimeout)
	params.Timeout = life
	m.Timeout = int64(life / time.Second)
	m.Limits = limits(p.opts, life)
	info, err := m.encode()
	if err != nil {
		return nil, err
	}
	params.Tags[tagInfo] = info
	tags := maps.Clone(params.Tags)
	delete(params.Tags, tagManaged)
	params.Tags[tagPool] = "1"
	sb, err := p.start(pl.fillCtx, params, m, nil)
	if err != nil {
		return nil, err
	}
	return &pooled{sb: sb, m: m, tags: tags}, nil
}

// remove takes e out of the pool; false when it was no longer there
// (handed out, replaced or closed).
func (pl *pool) remove(e *pooled) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.removeLocked(e)
}

func (pl *pool) removeLocked(e *pooled) bool {
	for i, x := range pl.ready {
		if x == e {
			pl.ready = append(pl.ready[:i:i], pl.ready[i+1:]...)
			return true
		}
	}
	return false
}

// replace terminates a sandbox that has waited maxAge and starts
// another.
func (pl *pool) replace(e *pooled) {
	pl.mu.Lock()
	if !pl.removeLocked(e) {
		pl.mu.Unlock()
		return
	}
	// Under mu, and e was in the pool, so Close has not started waiting
	// for wg.
	pl.wg.Go(func() { pl.terminate(e) })
	pl.mu.Unlock()
	e.stop()
	pl.refill()
}

// watch waits, with Modal's long poll, for a pooled sandbox to end, and
// drops it from the pool if it does (or if Modal cannot say) while it
// waits. It is not replaced at once: a sandbox that ends on its own may
// end again, and the next Create refills.
func (pl *pool) watch(e *pooled, ctx context.Context) {
	code, err := e.sb.Wait(ctx, nil)
	if ctx.Err() != nil || !pl.remove(e) {
		return
	}
	e.retire.Stop()
	if err != nil {
		pl.p.s.log.Warn("lost track of a prestarted sandbox; it is dropped from the pool", "sandbox", e.sb.SandboxID, "error", err)
		pl.terminate(e)
		return
	}
	pl.p.s.log.Warn("a prestarted sandbox ended while it waited; it is dropped from the pool", "sandbox", e.sb.SandboxID, "reason", exitReason(code))
	e.sb.Detach()
}

// terminate ends a pooled sandbox that is not handed out.
func (pl *pool) terminate(e *pooled) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := e.sb.Terminate(ctx, nil); err != nil && !isGone(err) {
		pl.p.s.log.Warn("terminating a prestarted sandbox failed; it ends at its timeout", "sandbox", e.sb.SandboxID, "error", err)
	}
	e.sb.Detach()
}

// close terminates every pooled sandbox, and those being created once
// they are (their creates get cleanupTimeout before they are cancelled).
func (pl *pool) close() {
	pl.mu.Lock()
	pl.closed = true
	ready := pl.ready
	pl.ready = nil
	if pl.later != nil {
		pl.later.Stop()
	}
	pl.mu.Unlock()
	pl.watchCancel()
	var wg sync.WaitGroup
	for _, e := range ready {
		e.retire.Stop()
		wg.Go(func() { pl.terminate(e) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() {
		pl.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(cleanupTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		pl.fillCancel()
		<-done
	}
	pl.fillCancel()
}

// retag gives a sandbox handed out by the pool its tags, in the
// background; List waits for it.
func (s *state) retag(h *Sandbox, tags map[string]string) {
	done := make(chan struct{})
	s.tagging.Store(done, struct{}{})
	go func() {
		defer func() {
			s.tagging.Delete(done)
			close(done)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := h.sb.SetTags(ctx, tags, nil); err != nil && !isGone(err) {
			s.log.Warn("tagging a sandbox from the pool failed; List will not show it", "sandbox", h.id, "error", err)
		}
	}()
}

// waitTagging waits for the tag updates in flight: within ctx, or within
// limit when it is positive.
func (s *state) waitTagging(ctx context.Context, limit time.Duration) error {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	var pending []chan struct{}
	s.tagging.Range(func(k, _ any) bool {
		pending = append(pending, k.(chan struct{}))
		return true
	})
	for _, done := range pending {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
