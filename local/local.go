// Package local is the embedded compute provider: sandboxes on this
// machine, isolated by the Linux kernel, with no daemon and no account.
//
// A sandbox is one long-lived agent process (this program, re-executed)
// started in fresh user, mount, pid, network, uts, ipc and cgroup
// namespaces and mapped to an unprivileged host uid, also when the caller
// is root. It sees a root built from read-only binds of the host's /usr
// and an allowlisted /etc, a private tmpfs work dir (/workspace, also
// HOME) and /tmp, a fresh /proc and a minimal /dev; no network but its own
// loopback unless asked; a clean environment. Every command and file
// operation runs inside it, on request: a command costs one message and
// one fork. A terminal is a pseudo-terminal of the sandbox's own devpts
// instance, its program confined like any command; the host reads and
// writes its master side directly. Destroy (or the death of the owning process) kills the agent,
// and with it every process of the sandbox; its files lived in memory and
// are gone with it.
//
// With CreateOptions.Image, the root is an OCI image's instead (package
// imagestore finds or pulls it): its layers, read-only, under a writable
// layer in the sandbox's own memory, mounted inside the sandbox's
// namespaces; the image's Env, WorkingDir and User apply (a User other
// than root needs the provider to run as root). See docs/isolation.md,
// "Image roots".
//
// Importing this package installs a hook that runs before main when the
// program is started as a sandbox agent; programs need no setup call.
package local

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
)

// Defaults for Options' zero values.
const (
	DefaultTimeout      = 5 * time.Minute
	DefaultDiskSize     = 512 << 20
	DefaultMaxProcesses = 512
	DefaultMaxOpenFiles = 1024
	DefaultMaxFileSize  = 1 << 30
	DefaultMaxMemory    = 1 << 30
	DefaultMaxCPU       = 1.0
	DefaultPrestart     = 1
	// WorkDir is the sandbox's writable work dir, its default working
	// directory and HOME.
	WorkDir = "/workspace"
)

// Provider runs sandboxes on this machine. It is safe for concurrent use.
// Close it to destroy every sandbox it started.
type Provider struct {
	opts           Options
	explicitMemory bool
	quota          *quota // the provider-wide caps

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	closed    bool
	// The reserves (Options.Prestart). hostReserve's spares have the
	// host's root. bareReserve's have no root yet (their agents wait
	// for one), for Creates that name an image: a reserve of its own,
	// started by the first such Create, so that image Creates neither
	// take the host-root spares nor go without. imageReserve's have the
	// root of the image the last image Create named (its image, without
	// a Use: a reserve must not keep an image from rm and prune; a
	// Create takes one only once it holds the image in use and finds
	// the very layer directories the spare mounted).
	hostReserve, bareReserve, imageReserve reserve
	bareUsed                               bool           // an image Create came: Warm fills the bare reserve too
	filling                                sync.WaitGroup // the fill goroutines, for Close
	makingRoom                             int            // Creates that gave up a spare's place: no refill meanwhile

	imgMu  sync.Mutex
	images *imagestore.Store // Options.ImageStore, or the default one once opened
}

var _ driver.Provider = (*Provider)(nil)

// New returns a local provider. It fails with an error that says why when
// this machine cannot isolate sandboxes (not Linux, user namespaces
// disabled); IsolationNone must then be asked for explicitly.
func New(opts Options) (*Provider, error) {
	if opts.Isolation == "" {
		opts.Isolation = IsolationNamespaces
	}
	switch opts.Isolation {
	case IsolationNamespaces, IsolationNone:
	default:
		return nil, fmt.Errorf("local: unknown isolation %q (want %q or %q)", opts.Isolation, IsolationNamespaces, IsolationNone)
	}
	if opts.Timeout < 0 || opts.DiskSize < 0 || opts.MaxProcesses < 0 || opts.MaxOpenFiles < 0 || opts.MaxFileSize < 0 || opts.MaxMemory < 0 || opts.MaxCPU < 0 {
		return nil, errors.New("local: negative limit in Options")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}

	if opts.MaxProcesses == 0 {
		opts.MaxProcesses = DefaultMaxProcesses
	}
	if opts.MaxOpenFiles == 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	// Remember whether the caller chose a memory cap: only then does it
	// fall back to RLIMIT_AS, which breaks runtimes that reserve address
	// space (Node, Go, the JVM) when it is small.
	explicitMemory := opts.MaxMemory > 0
	if opts.MaxMemory == 0 {
		opts.MaxMemory = DefaultMaxMemory
	}
	if opts.MaxCPU == 0 {
		opts.MaxCPU = DefaultMaxCPU
	}
	// Files live in memory and count against the memory limit: a disk
	// quota as large as the memory limit would let a full disk starve the
	// sandbox's processes, its agent included.
	switch {
	case opts.DiskSize == 0:
		opts.DiskSize = min(DefaultDiskSize, opts.MaxMemory/2)
	case opts.DiskSize >= opts.MaxMemory:
		return nil, fmt.Errorf("local: DiskSize (%s) must be below MaxMemory (%s): a sandbox's files are kept in its memory", bytesString(opts.DiskSize), bytesString(opts.MaxMemory))
	}
	if err := setQuotaDefaults(&opts); err != nil {
		return nil, err
	}
	if err := checkSupport(opts); err != nil {
		return nil, err
	}
	// The agent program is made ready (agentbin: a copy into memory,
	// about 1.5 ms) and the seccomp filters assembled while the sweep
	// runs, not when the first sandbox starts.
	go prepareAgent()
	holdLauncher()
	if opts.Isolation == IsolationNamespaces {
		sweepNow()
	}
	p := &Provider{opts: opts, explicitMemory: explicitMemory, quota: newQuota(opts), sandboxes: map[string]*sandbox{}, images: opts.ImageStore}
	p.hostReserve.start = func(*sandboxImage) (*sandbox, error) { return startAgent(p, p.opts.Network, nil, nil) }
	p.bareReserve.start = func(*sandboxImage) (*sandbox, error) { return launchAgent(p, p.opts.Network, nil, true) }
	p.imageReserve.start = func(img *sandboxImage) (*sandbox, error) { return startAgent(p, p.opts.Network, nil, img) }
	return p, nil
}

// Name returns "local".
func (p *Provider) Name() string { return "local" }

// Create starts a sandbox.
func (p *Provider) Create(ctx context.Context, opts *driver.CreateOptions) (driver.Sandbox, error) {
	if opts == nil {
		opts = &driver.CreateOptions{}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.opts.Isolation == IsolationNamespaces {
		sweepSometimes() // what crashed owners left behind
	}
	network := p.opts.Network
	switch opts.Network {
	case driver.NetworkNone:
		network = false
	case driver.NetworkHost:
		network = true
	}
	if len(opts.NetworkAllow) > 0 {
		network = false // its own namespace; the proxy is the way out
	}
	if p.opts.Isolation == IsolationNone && (len(opts.NetworkAllow) > 0 || opts.Network == driver.NetworkNone) {
		return nil, fmt.Errorf("local: network restrictions need isolation; this provider runs unisolated (IsolationNone): %w", driver.ErrUnsupported)
	}
	gpus, err := gpuDevices(opts.GPU)
	if err != nil {
		return nil, err
	}
	if len(gpus) > 0 && p.opts.Isolation == IsolationNone {
		gpus = nil // plain host processes see the devices anyway
	}
	var img *sandboxImage
	if opts.Image != "" {
		if p.opts.Isolation == IsolationNone {
			return nil, fmt.Errorf("local: images need isolation (an image root is a mount of the sandbox's own); this provider runs unisolated (IsolationNone): %w", driver.ErrUnsupported)
		}
		if img, err = p.holdImage(ctx, opts); err != nil {
			return nil, err
		}
	}
	id := newID()
	var s *sandbox
	switch {
	case len(gpus) > 0:
	case img == nil:
		s = p.takePrestarted(network)
	default:
		// Host-root spares have their root already: an image's sandbox
		// takes one with this image's root, or one of the bare reserve,
		// whose root it builds now.
		if s = p.takeImageSpare(network, img); s != nil {
			break
		}
		if s = p.takeBareFor(network, img); s != nil { // not for an image's USER (image_user_linux.go)
			if err := s.buildRoot(img); err != nil {
				s.destroy()
				s = nil // a spare that died, or a root that cannot be built: try afresh below, once
			}
		}
	}
	if s != nil {
		if err := s.activate(ctx, id, opts); err != nil {
			s.destroy()
			if !errors.Is(err, driver.ErrStopped) {
				return nil, err // the request's fault (a bad Dir, say): a fresh start would fail alike
			}
			s = nil // a spare that died: start afresh below
			if img != nil {
				// The dead spare released the image: hold it again.
				img.release()
				if img, err = p.holdImage(ctx, opts); err != nil {
					return nil, err
				}
			}
		}
	}
	if s == nil {
		// Started for this Create: its settings go with the agent's
		// configuration (no init round trip).
		bind := &binding{id: id, opts: opts}
		var err error
		s, err = p.startCancelableFor(ctx, network, gpus, img, bind)
		if errors.Is(err, driver.ErrQuotaExceeded) {
			s, err = p.startMakingRoom(ctx, network, gpus, img, bind, err)
		}
		if err != nil {
			if img != nil {
				img.release()
			}
			return nil, err
		}
		if err := s.activate(ctx, id, opts); err != nil {
			s.destroy()
			return nil, err
		}
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		s.destroy()
		return nil, errors.New("local: provider is closed")
	}
	p.sandboxes[id] = s
	p.mu.Unlock()
	return s, nil
}

// Get returns a live sandbox of this provider by id.
func (p *Provider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	p.mu.Lock()
	s := p.sandboxes[id]
	p.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("local: sandbox %q: %w", id, driver.ErrNotFound)
	}
	return s, nil
}

// List returns the live sandboxes, oldest first.
func (p *Provider) List(ctx context.Context) ([]driver.Sandbox, error) {
	p.mu.Lock()
	list := make([]*sandbox, 0, len(p.sandboxes))
	for _, s := range p.sandboxes {
		list = append(list, s)
	}
	p.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].created.Before(list[j].created) })
	out := make([]driver.Sandbox, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out, nil
}

// Destroy kills a sandbox's processes and frees its files. Unknown ids are
// not an error.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	p.mu.Lock()
	s := p.sandboxes[id]
	delete(p.sandboxes, id)
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.destroy()
}

// forget drops a sandbox that ended on its own (lifetime over, agent died).
func (p *Provider) forget(s *sandbox) {
	p.mu.Lock()
	if p.sandboxes[s.id] == s {
		delete(p.sandboxes, s.id)
	}
	p.mu.Unlock()
}

// Close destroys every sandbox, started ones kept in reserve included,
// and makes Create fail.
func (p *Provider) Close() error {
	p.mu.Lock()
	if !p.closed {
		// Once its sandboxes are gone: the last provider's Close stops
		// the launcher.
		defer releaseLauncher()
	}
	p.closed = true
	list := p.sandboxes
	p.sandboxes = map[string]*sandbox{}
	var spares []*sandbox
	for _, r := range []*reserve{&p.hostReserve, &p.bareReserve, &p.imageReserve} {
		spares = append(spares, r.spares...)
		r.spares = nil
	}
	p.mu.Unlock()
	p.filling.Wait()
	var errs []error
	for _, s := range list {
		errs = append(errs, s.destroy())
	}
	for _, s := range spares {
		errs = append(errs, s.destroy())
	}
	return errors.Join(errs...)
}

// startCancelable starts a sandbox, giving up (and cleaning up) when ctx
// is done first.
func (p *Provider) startCancelable(ctx context.Context, network bool, gpus []string, img *sandboxImage) (*sandbox, error) {
	return p.startCancelableFor(ctx, network, gpus, img, nil)
}

// binding is the Create a sandbox is started for (not ahead of demand):
// its settings go to the agent with the configuration, saving a round
// trip; activate then only finishes on the host's side.
type binding struct {
	id   string
	opts *driver.CreateOptions
}

// startCancelableFor is startCancelable for a sandbox started for the
// Create bind (nil: for none in particular).
func (p *Provider) startCancelableFor(ctx context.Context, network bool, gpus []string, img *sandboxImage, bind *binding) (*sandbox, error) {
	if ctx.Done() == nil {
		// A context that is never done (context.Background): no need to
		// hand the start to another goroutine and wait for it.
		return startAgentFor(p, network, gpus, img, bind)
	}
	type started struct {
		s   *sandbox
		err error
	}
	ch := make(chan started, 1)
	go func() {
		s, err := startAgentFor(p, network, gpus, img, bind)
		ch <- started{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.destroy()
			}
		}()
		return nil, ctx.Err()
	}
}

// startMakingRoom retries a start that the provider-wide caps refused,
// giving up spares' places one at a time (spares hold places like any
// sandbox), so that a Create no spare can serve (another network policy, a
// GPU) is not refused for the sake of spares. Refills wait meanwhile.
func (p *Provider) startMakingRoom(ctx context.Context, network bool, gpus []string, img *sandboxImage, bind *binding, err error) (*sandbox, error) {
	p.mu.Lock()
	p.makingRoom++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.makingRoom--
		p.mu.Unlock()
	}()
	for errors.Is(err, driver.ErrQuotaExceeded) {
		p.mu.Lock()
		var spare *sandbox
		for _, r := range []*reserve{&p.hostReserve, &p.bareReserve, &p.imageReserve} {
			if n := len(r.spares); n > 0 {
				spare, r.spares = r.spares[n-1], r.spares[:n-1]
				break
			}
		}
		p.mu.Unlock()
		if spare == nil {
			return nil, err
		}
		spare.destroy()
		var s *sandbox
		if s, err = p.startCancelableFor(ctx, network, gpus, img, bind); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// takePrestarted returns a sandbox started ahead of demand, if one is
// ready for this network mode, and starts replacing it. The first Create
// starts the reserve: a provider that is never used starts nothing.
func (p *Provider) takePrestarted(network bool) *sandbox {
	if p.opts.Prestart < 0 || network != p.opts.Network {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	return p.takeSpare(&p.hostReserve)
}

// takeBare is takePrestarted for the bare reserve (sandboxes without a
// root yet, for images).
func (p *Provider) takeBare(network bool) *sandbox {
	if p.opts.Prestart < 0 || network != p.opts.Network {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.bareUsed = true
	return p.takeSpare(&p.bareReserve)
}

// Warm fills the provider's reserve of prestarted sandboxes (see
// Options.Prestart) and waits until it is full, for callers that want
// their first Create fast too; once a Create has named an image, the
// reserve for images as well. With Prestart off it does nothing.
func (p *Provider) Warm(ctx context.Context) error {
	if p.opts.Prestart < 0 {
		return nil
	}
	for {
		p.mu.Lock()
		closed, full := p.closed, true
		for _, r := range []*reserve{&p.hostReserve, &p.bareReserve, &p.imageReserve} {
			wanted := r == &p.hostReserve || r == &p.bareReserve && p.bareUsed || r == &p.imageReserve && r.image != nil
			if !wanted || len(r.spares) >= p.prestart() {
				continue
			}
			full = false
			if !closed {
				p.refill(r, 0)
			}
		}
		p.mu.Unlock()
		switch {
		case closed:
			return errors.New("local: provider is closed")
		case full:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (p *Provider) prestart() int {
	if p.opts.Prestart == 0 {
		return DefaultPrestart
	}
	return p.opts.Prestart
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return "lsb-" + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// baseEnv is the environment every sandboxed command starts from.
func baseEnv(home string) map[string]string {
	return map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": home,
		"LANG": "C.UTF-8",
		"USER": "root",
		// Python's output streams as it is printed, as Node's does, also
		// when it goes to a pipe (it always does here).
		"PYTHONUNBUFFERED": "1",
	}
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
