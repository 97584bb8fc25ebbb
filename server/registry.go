package server

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/server/wire"
)

// The registry: the sandboxes a server created, which alone it serves.
//
// Its rules, which the race tests hold it to:
//
//   - An entry leaves the registry only once its sandbox is destroyed (by
//     a client, the idle reaper, or Shutdown) or the provider confirmed,
//     for that one sandbox, that it is gone; and then it is destroyed all
//     the same, so that nothing it held is left behind. A list of the
//     provider's sandboxes is only a hint: a sandbox created while the
//     list was taken is not in it, and is alive.
//   - A sandbox counts against MaxSandboxes from the moment its create is
//     let through (a reserved slot, given back if the create fails) until
//     its Destroy has returned: the cap holds at every instant, however
//     many requests race.
//   - A Destroy that fails keeps the entry (unusable, still counted) and
//     the reaper tries again.

// entryState is where a registered sandbox is in its life.
type entryState int

const (
	stateLive       entryState = iota // usable
	stateDestroying                   // its Destroy is running
	stateDoomed                       // its Destroy failed: the reaper retries
)

// entry is a sandbox the server created.
type entry struct {
	sb      *compute.Sandbox
	runtime compute.Runtime
	// tenant is who created it (Options.Tokens); only they, and admins,
	// see it.
	tenant string
	// seq orders entries by registration: a provider's list taken after
	// seq was handed out includes the sandbox (unless it ended).
	seq uint64
	// contextsStarting counts the code contexts being created in it,
	// for maxContexts.
	contextsStarting atomic.Int32
	// Guarded by Server.mu.
	state    entryState
	active   int // requests and exec streams using it
	lastUsed time.Time
	retryAt  time.Time // stateDoomed: when the reaper tries again
}

// retryDestroy is how long the reaper waits before it destroys again a
// sandbox whose Destroy failed.
const retryDestroy = 10 * time.Second

// create creates a sandbox within MaxSandboxes and registers it for the
// caller.
func (s *Server) create(ctx context.Context, opts *compute.CreateOptions) (*entry, error) {
	// Bad input is a 400 whatever the caller may do: say what is wrong
	// before saying what is not allowed.
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	switch {
	case opts.Network == compute.NetworkHost || len(opts.NetworkAllow) > 0:
		if !s.opts.AllowNetwork {
			return nil, errorf(wire.CodeForbidden, "this server does not give sandboxes network access (its operator can allow it: compute serve --allow-network, server.Options.AllowNetwork)")
		}
		if !s.authenticated() {
			// A sandbox with network reaches this machine's loopback,
			// where a server without a token takes anyone's orders.
			return nil, errorf(wire.CodeForbidden, "this server has no token, so it gives no sandbox network access: a sandbox with network could call this server's API as if it were this machine. Its operator must set a token (compute serve --token or $COMPUTE_TOKEN, server.Options.Token or Tokens) to allow network")
		}
	case opts.Network == compute.NetworkDefault && (!s.opts.AllowNetwork || !s.authenticated()):
		opts.Network = compute.NetworkNone
	}
	if err := s.checkImage(opts.Image); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	if err := s.reserve(ctx); err != nil {
		return nil, err
	}
	sb, err := s.c.Create(ctx, opts)
	s.mu.Lock()
	s.pending--
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if s.final {
		s.mu.Unlock()
		s.destroy(sb.ID())
		return nil, errShuttingDown
	}
	s.seq++
	e := &entry{sb: sb, runtime: opts.Runtime, tenant: caller.tenant, seq: s.seq, lastUsed: time.Now()}
	s.sandboxes[sb.ID()] = e
	s.mu.Unlock()
	return e, nil
}

// checkImage applies the server's image rules (Options.AllowImages,
// AllowLocalImages) to a create's image.
func (s *Server) checkImage(image string) error {
	if image == "" {
		return nil
	}
	if !s.opts.AllowImages {
		return errorf(wire.CodeForbidden, "this server does not let clients choose images (its operator can allow it: compute serve --allow-images, server.Options.AllowImages); create the sandbox without an image")
	}
	if !isLocalImage(image) {
		if len(s.opts.ImageRegistries) == 0 {
			return nil
		}
		reg, err := imagestore.Registry(image)
		if err != nil {
			return errorf(wire.CodeBadRequest, "image %q: %v", image, err)
		}
		if err := imagestore.AllowRegistries(s.opts.ImageRegistries...)(reg); err != nil {
			return errorf(wire.CodeForbidden, "image %q: %v (its operator chooses them: compute serve --image-registries, server.Options.ImageRegistries)", image, err)
		}
		return nil
	}
	if !s.opts.AllowLocalImages {
		return errorf(wire.CodeForbidden, "image %q names files on the server's machine, which this server does not read for clients (its operator can allow it: compute serve --allow-local-images, server.Options.AllowLocalImages); push the image to a registry and name it by reference", image)
	}
	if !s.authenticated() {
		return errorf(wire.CodeForbidden, "this server has no token, so it reads no image from its machine's files for clients: every local user could read the server user's files that way. Its operator must set a token (compute serve --token or $COMPUTE_TOKEN) to allow local images")
	}
	return nil
}

// isLocalImage reports whether an image reference names files on this
// machine rather than a registry.
func isLocalImage(image string) bool {
	for _, prefix := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if strings.HasPrefix(image, prefix) {
			return true
		}
	}
	return false
}

// reserve takes a slot for one more sandbox, or refuses with 429.
func (s *Server) reserve(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if len(s.sandboxes)+s.pending < s.opts.MaxSandboxes {
			s.pending++
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if attempt > 0 {
			return errorf(wire.CodeLimit, "this server already holds its maximum of %d sandboxes; destroy one first", s.opts.MaxSandboxes)
		}
		// Some may have ended on their own.
		s.prune(ctx)
	}
}

// visible reports whether the caller may see e: its creator, or an admin.
func (c caller) visible(e *entry) bool { return c.admin || e.tenant == c.tenant }

// lookup returns the live sandbox id if the caller may see it.
func (s *Server) lookup(ctx context.Context, id string) *entry {
	caller := callerOf(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sandboxes[id]
	if e == nil || e.state != stateLive || !caller.visible(e) {
		return nil
	}
	return e
}

// acquire returns a sandbox the caller may use, marked in use until
// release is called. Any other id, another tenant's sandboxes included,
// is not found.
func (s *Server) acquire(ctx context.Context, id string) (*entry, func(), error) {
	if id == "" {
		return nil, nil, badRequest("sandboxId is required for this action")
	}
	caller := callerOf(ctx)
	s.mu.Lock()
	e := s.sandboxes[id]
	if e != nil && (e.state != stateLive || !caller.visible(e)) {
		e = nil
	}
	if e != nil {
		e.active++
		e.lastUsed = time.Now()
	}
	s.mu.Unlock()
	if e == nil {
		return nil, nil, sandboxNotFound(id)
	}
	return e, func() {
		s.mu.Lock()
		e.active--
		e.lastUsed = time.Now()
		s.mu.Unlock()
	}, nil
}

// destroyFor destroys a sandbox for a client. An id the caller may not
// see is no error and destroys nothing, as an unknown one (the seed's
// rule; and another tenant's ids are not revealed).
func (s *Server) destroyFor(ctx context.Context, id string) error {
	e := s.lookup(ctx, id)
	if e == nil {
		return nil
	}
	return s.retire(e)
}

// retire destroys e's sandbox and then drops the entry. While it runs the
// entry is unusable and still counted; if the Destroy fails, the entry
// stays (doomed) for the reaper to try again. Retiring an entry that
// another request is retiring waits for nothing and is no error.
func (s *Server) retire(e *entry) error {
	s.mu.Lock()
	ok := s.beginRetire(e)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return s.endRetire(e)
}

// beginRetire marks e as being destroyed, unless it already is or left
// the registry. The caller holds s.mu.
func (s *Server) beginRetire(e *entry) bool {
	if e.state == stateDestroying || s.sandboxes[e.sb.ID()] != e {
		return false
	}
	e.state = stateDestroying
	return true
}

// endRetire destroys a sandbox that beginRetire marked.
func (s *Server) endRetire(e *entry) error {
	err := s.destroy(e.sb.ID())
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		e.state = stateDoomed
		e.retryAt = time.Now().Add(retryDestroy)
		return err
	}
	if s.sandboxes[e.sb.ID()] == e {
		delete(s.sandboxes, e.sb.ID())
	}
	return nil
}

// gone retires a sandbox that err says has ended, once the provider
// confirms it for that sandbox (a file that is not found is not a sandbox
// that is not found).
func (s *Server) gone(e *entry, err error) {
	if !errors.Is(err, compute.ErrNotFound) && !errors.Is(err, compute.ErrStopped) {
		return
	}
	if s.ended(s.base, e) {
		s.retire(e)
	}
}

// ended asks the provider whether e's sandbox is over: not found,
// stopped or failed.
func (s *Server) ended(ctx context.Context, e *entry) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sb, err := s.c.Get(ctx, e.sb.ID())
	if errors.Is(err, compute.ErrNotFound) {
		return true
	}
	if err != nil {
		return false
	}
	info, err := sb.Info(ctx)
	switch {
	case errors.Is(err, compute.ErrNotFound) || errors.Is(err, compute.ErrStopped):
		return true
	case err != nil:
		return false
	}
	return info.Status == compute.StatusStopped || info.Status == compute.StatusError
}

// prune retires the sandboxes that ended on their own (their lifetime ran
// out, or they died). The provider's list names the suspects: entries
// registered before it was taken and missing from it; each is confirmed
// on its own before it is retired. It returns the error of the list.
func (s *Server) prune(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s.mu.Lock()
	mark := s.seq
	s.mu.Unlock()
	all, err := s.c.List(ctx)
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(all))
	for _, sb := range all {
		listed[sb.ID()] = true
	}
	var suspects []*entry
	s.mu.Lock()
	for id, e := range s.sandboxes {
		if e.state == stateLive && e.seq <= mark && !listed[id] {
			suspects = append(suspects, e)
		}
	}
	s.mu.Unlock()
	for _, e := range suspects {
		if s.ended(ctx, e) {
			s.retire(e)
		}
	}
	return nil
}

// list returns the live sandboxes the caller may see, oldest first, after
// retiring those that ended.
func (s *Server) list(ctx context.Context) ([]*entry, error) {
	if err := s.prune(ctx); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	var out []*entry
	s.mu.Lock()
	for _, e := range s.sandboxes {
		if e.state == stateLive && caller.visible(e) {
			out = append(out, e)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

// reap destroys idle sandboxes (when IdleTimeout is positive), retries
// failed destroys and retires those that ended on their own.
func (s *Server) reap() {
	defer s.background.done()
	every := 30 * time.Second
	if s.opts.IdleTimeout > 0 {
		every = min(max(s.opts.IdleTimeout/4, 10*time.Millisecond), every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var idle, doomed []*entry
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return
		}
		for _, e := range s.sandboxes {
			switch {
			case e.state == stateLive && e.active == 0 && s.opts.IdleTimeout > 0 && now.Sub(e.lastUsed) >= s.opts.IdleTimeout:
				// Marked here, under the lock that acquire takes: no
				// request can start using it now.
				s.beginRetire(e)
				idle = append(idle, e)
			case e.state == stateDoomed && !now.Before(e.retryAt):
				doomed = append(doomed, e)
			}
		}
		n := len(s.sandboxes)
		s.mu.Unlock()
		for _, e := range idle {
			s.log.Info("server: destroying idle sandbox", "sandbox", e.sb.ID(), "idle", now.Sub(e.lastUsed).Round(time.Millisecond))
			s.endRetire(e)
		}
		for _, e := range doomed {
			s.log.Info("server: destroying again a sandbox whose destroy failed", "sandbox", e.sb.ID())
			s.retire(e)
		}
		if n > 0 {
			s.prune(s.base)
		}
	}
}

// imageContext is the build context a create's image files make (nil
// for none).
func imageContext(files []wire.ImageFile) fs.FS {
	if len(files) == 0 {
		return nil
	}
	ctx := make([]driver.ContextFile, len(files))
	for i, f := range files {
		ctx[i] = driver.ContextFile{Path: f.Path, Mode: fs.FileMode(f.Mode) & fs.ModePerm, Data: f.Data}
		if f.Dir {
			ctx[i].Mode |= fs.ModeDir
		}
	}
	return driver.ContextFS(ctx)
}
