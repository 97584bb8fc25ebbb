package modal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

const providerName = "modal"

// Provider runs sandboxes on Modal. It implements driver.Provider and is
// safe for concurrent use. Make one with New and Close it when done;
// closing it leaves the sandboxes running on Modal (Destroy them, or let
// their timeout end them).
type Provider struct {
	s    *state
	opts SandboxOptions
}

// state is what a Provider and the providers derived from it with With
// share: the SDK client, the app, the image cache and the handles.
type state struct {
	cfg       Config
	client    *modalsdk.Client
	ownClient bool
	// log receives this package's warnings (cfg.Logger, or the default).
	log *slog.Logger

	apps    cache[*modalsdk.App]
	images  cache[*modalsdk.Image]
	secrets cache[*modalsdk.Secret]
	volumes cache[*modalsdk.Volume]

	// pool holds the prestarted sandboxes (Config.Prestart); nil without.
	pool *pool
	// tagging are the tag updates of sandboxes handed out by the pool,
	// still in flight: List waits for them.
	tagging sync.Map // chan struct{} -> struct{}

	mu      sync.Mutex
	closed  bool
	handles map[string]*Sandbox
}

var _ driver.Provider = (*Provider)(nil)

// New returns a provider for Modal. It makes no network call: credentials
// are checked by the first Create (or List, Get, ...), which reports
// missing ones with an error matching driver.ErrMissingCredentials.
func New(cfg Config) (*Provider, error) {
	switch cfg.Runtime {
	case "", driver.Python, driver.Node:
	default:
		return nil, fmt.Errorf("modal: unknown runtime %q (want %q or %q)", cfg.Runtime, driver.Python, driver.Node)
	}
	if cfg.Timeout < 0 || cfg.Timeout > MaxTimeout {
		return nil, fmt.Errorf("modal: Timeout %v is outside Modal's range (0 to %v)", cfg.Timeout, MaxTimeout)
	}
	if cfg.App == "" {
		cfg.App = DefaultApp
	}
	if cfg.PythonImage == "" {
		cfg.PythonImage = DefaultPythonImage
	}
	if cfg.NodeImage == "" {
		cfg.NodeImage = DefaultNodeImage
	}
	if err := checkEnv(cfg.Sandbox.Env); err != nil {
		return nil, err
	}
	switch {
	case cfg.Prestart < 0 || cfg.Prestart > MaxPrestart:
		return nil, fmt.Errorf("modal: Prestart %d is outside 0 to %d", cfg.Prestart, MaxPrestart)
	case cfg.Prestart > 0 && cfg.Sandbox.Name != "":
		return nil, fmt.Errorf("modal: Prestart cannot be combined with Sandbox.Name %q: Modal allows one running sandbox per name", cfg.Sandbox.Name)
	case cfg.Prestart > 0 && cfg.Sandbox.IdleTimeout > 0:
		return nil, errors.New("modal: Prestart cannot be combined with Sandbox.IdleTimeout: a prestarted sandbox is idle while it waits (use Timeout, or no pool)")
	}
	s := &state{cfg: cfg, client: cfg.Client, handles: map[string]*Sandbox{}, log: cfg.Logger}
	if s.log == nil {
		s.log = defaultLogger()
	}
	if s.client == nil {
		c, err := newClient(&cfg)
		if err != nil {
			return nil, err
		}
		s.client, s.ownClient = c, true
	}
	p := &Provider{s: s, opts: cfg.Sandbox}
	if cfg.Prestart > 0 {
		// Checked here, not at the first fill, so that bad default
		// options are New's error rather than a log line.
		if _, _, err := p.createParams(&driver.CreateOptions{}); err != nil {
			if s.ownClient {
				s.client.Close()
			}
			return nil, err
		}
		s.pool = newPool(p, cfg.Prestart)
		s.pool.refill()
	}
	return p, nil
}

// With returns a provider that creates its sandboxes with opts on top of
// p's options (maps merged, other set fields replaced). It shares p's
// client, app, images and sandboxes: use it for one kind of sandbox
// (compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{GPU:
// "A100"})})), and Close only p.
func (p *Provider) With(opts SandboxOptions) *Provider {
	return &Provider{s: p.s, opts: p.opts.merge(opts)}
}

// Client returns the Modal SDK client the provider uses.
func (p *Provider) Client() *modalsdk.Client { return p.s.client }

// Name returns "modal".
func (p *Provider) Name() string { return providerName }

// Close terminates the prestarted sandboxes (Config.Prestart) and
// releases the provider's connections. The sandboxes it handed out keep
// running on Modal until destroyed or until their timeout; a later
// provider finds them with Get and List. Close is safe to call more than
// once.
func (p *Provider) Close() error {
	s := p.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	handles := s.handles
	s.handles = map[string]*Sandbox{}
	s.mu.Unlock()
	if s.pool != nil {
		s.pool.close()
	}
	s.waitTagging(context.Background(), cleanupTimeout)
	for _, h := range handles {
		h.detach()
	}
	if s.ownClient {
		s.client.Close()
	}
	return nil
}

func (p *Provider) checkOpen(op string) error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.closed {
		return &Error{Op: op, Msg: "the provider is closed"}
	}
	return nil
}

// quietKey marks the context of work nobody waits for (the warm pool's
// creates), whose progress Config.Progress must not show.
type quietKey struct{}

func (p *Provider) progress(ctx context.Context, msg string) {
	if f := p.s.cfg.Progress; f != nil && ctx.Value(quietKey{}) == nil {
		f(msg)
	}
}

// app returns the Modal app by name, getting (or creating) it once.
func (p *Provider) app(ctx context.Context, name string) (*modalsdk.App, error) {
	return p.s.apps.get(ctx, name, func(ctx context.Context) (*modalsdk.App, error) {
		p.progress(ctx, "connecting to Modal (app "+name+")")
		app, err := p.s.client.Apps.FromName(ctx, name, &modalsdk.AppFromNameParams{
			Environment: p.s.cfg.Environment, CreateIfMissing: true,
		})
		return app, wrapErr("create", "", err)
	})
}

// image returns a built image for a registry tag or an image id, with
// steps (CreateOptions.ImageSteps) as its Dockerfile commands, building it
// once per provider (Modal caches the layers of the steps too).
func (p *Provider) image(ctx context.Context, app *modalsdk.App, ref string, steps []string) (*modalsdk.Image, error) {
	key := ref // image ids are global; a registry image is built in an app
	if !isImageID(ref) || len(steps) > 0 {
		key = app.AppID + "\x00" + ref
	}
	for _, step := range steps {
		key += "\x00" + step
	}
	return p.s.images.get(ctx, key, func(ctx context.Context) (*modalsdk.Image, error) {
		if isImageID(ref) && len(steps) == 0 {
			img, err := p.s.client.Images.FromID(ctx, ref, nil)
			if err != nil {
				return nil, wrapErr("create", "", fmt.Errorf("image %s: %w", ref, err))
			}
			return img, nil
		}
		var base *modalsdk.Image
		if isImageID(ref) {
			var err error
			if base, err = p.s.client.Images.FromID(ctx, ref, nil); err != nil {
				return nil, wrapErr("create", "", fmt.Errorf("image %s: %w", ref, err))
			}
		} else {
			base = p.s.client.Images.FromRegistry(ref, nil)
		}
		what := ref
		if len(steps) > 0 {
			what = fmt.Sprintf("%s with %d steps", ref, len(steps))
		}
		p.progress(ctx, "building image "+what)
		img, err := base.DockerfileCommands(steps, nil).Build(ctx, app, nil)
		if err != nil {
			return nil, wrapErr("create", "", fmt.Errorf("building image %s: %w", what, err))
		}
		return img, nil
	})
}

// isImageID reports whether ref names an image Modal has ("im-" and 22
// characters) rather than a registry tag.
func isImageID(ref string) bool {
	if len(ref) != 25 || ref[:3] != "im-" {
		return false
	}
	for _, c := range ref[3:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func (p *Provider) secret(ctx context.Context, name string) (*modalsdk.Secret, error) {
	return p.s.secrets.get(ctx, name, func(ctx context.Context) (*modalsdk.Secret, error) {
		sec, err := p.s.client.Secrets.FromName(ctx, name, &modalsdk.SecretFromNameParams{Environment: p.s.cfg.Environment})
		if err != nil {
			return nil, wrapErr("create", "", fmt.Errorf("secret %q: %w", name, err))
		}
		return sec, nil
	})
}

func (p *Provider) volume(ctx context.Context, name string) (*modalsdk.Volume, error) {
	return p.s.volumes.get(ctx, name, func(ctx context.Context) (*modalsdk.Volume, error) {
		v, err := p.s.client.Volumes.FromName(ctx, name, &modalsdk.VolumeFromNameParams{Environment: p.s.cfg.Environment, CreateIfMissing: true})
		if err != nil {
			return nil, wrapErr("create", "", fmt.Errorf("volume %q: %w", name, err))
		}
		return v, nil
	})
}

// Prepare gets the app and builds the image a Create with opts would use,
// so that the first Create is as fast as the others. It is optional.
func (p *Provider) Prepare(ctx context.Context, opts *driver.CreateOptions) error {
	if opts == nil {
		opts = &driver.CreateOptions{}
	}
	_, m, err := p.createParams(opts)
	if err != nil {
		return err
	}
	app, err := p.app(ctx, p.appName())
	if err != nil {
		return err
	}
	steps, err := modalSteps(opts.ImageSteps, opts.ImageContext)
	if err != nil {
		return err
	}
	_, err = p.image(ctx, app, m.Image, steps)
	return err
}

func (p *Provider) appName() string {
	if p.opts.App != "" {
		return p.opts.App
	}
	return p.s.cfg.App
}

// Create starts a sandbox on Modal. On a fresh provider it first gets the
// app and builds the image (once each); then it is one call to Modal. With
// Config.Prestart, a Create with the default options takes a running
// sandbox from the pool instead, with no call at all.
func (p *Provider) Create(ctx context.Context, opts *driver.CreateOptions) (driver.Sandbox, error) {
	if err := p.checkOpen("create"); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &driver.CreateOptions{}
	}
	if pl := p.s.pool; pl != nil && pl.matches(p, opts) {
		if h := pl.take(); h != nil {
			return h, nil
		}
	}
	params, m, err := p.createParams(opts)
	if err != nil {
		return nil, err
	}
	steps, err := modalSteps(opts.ImageSteps, opts.ImageContext) // COPY as RUN (imagesteps.go)
	if err != nil {
		return nil, err
	}
	sb, err := p.start(ctx, params, m, steps)
	if err != nil {
		return nil, err
	}
	h := p.s.newHandle(sb, m)
	if h == nil {
		// Closed while creating: the sandbox must not outlive the caller's
		// knowledge of it.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		sb.Terminate(tctx, nil)
		cancel()
		sb.Detach()
		return nil, &Error{Op: "create", Msg: "the provider was closed"}
	}
	return h, nil
}

// start makes a sandbox on Modal: the app, the image, the secrets and the
// volumes (each fetched once per provider, at the same time), then the
// create.
func (p *Provider) start(ctx context.Context, params *modalsdk.SandboxCreateParams, m *meta, steps []string) (*modalsdk.Sandbox, error) {
	o := p.opts
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		first   error
		app     *modalsdk.App
		img     *modalsdk.Image
		secrets = make([]*modalsdk.Secret, len(o.Secrets))
		volumes = make(map[string]*modalsdk.Volume, len(o.Volumes))
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	// The image needs the app; secrets and volumes need nothing, and are
	// fetched meanwhile rather than one after the other.
	wg.Go(func() {
		var err error
		if app, err = p.app(ctx, p.appName()); err != nil {
			fail(err)
			return
		}
		if img, err = p.image(ctx, app, m.Image, steps); err != nil {
			fail(err)
		}
	})
	for i, name := range o.Secrets {
		wg.Go(func() {
			sec, err := p.secret(ctx, name)
			if err != nil {
				fail(err)
			}
			secrets[i] = sec
		})
	}
	for path, name := range o.Volumes {
		wg.Go(func() {
			v, err := p.volume(ctx, name)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			volumes[path] = v
			mu.Unlock()
		})
	}
	wg.Wait()
	if first != nil {
		return nil, ctxErr(ctx, first)
	}
	params.Secrets = append(params.Secrets, secrets...)
	if len(volumes) > 0 {
		params.Volumes = volumes
	}
	p.progress(ctx, "starting sandbox")
	sb, err := p.s.client.Sandboxes.Create(ctx, app, img, params)
	if err != nil {
		return nil, ctxErr(ctx, wrapErr("create", "", err))
	}
	p.progress(ctx, "sandbox "+sb.SandboxID+" is running")
	return sb, nil
}

// newHandle registers a sandbox handle; nil when the provider is closed.
func (s *state) newHandle(sb *modalsdk.Sandbox, m *meta) *Sandbox {
	h := &Sandbox{s: s, sb: sb, id: sb.SandboxID, meta: m, procs: map[*process]struct{}{}}
	if m != nil {
		h.workdir = m.Workdir
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if old := s.handles[h.id]; old != nil {
		return old
	}
	s.handles[h.id] = h
	return h
}

// cleanupTimeout bounds the termination of a sandbox that was created
// while the provider was being closed (done on a context of its own, as
// the caller's may have ended).
const cleanupTimeout = 30 * time.Second

// handle returns the cached handle for id, or a fresh one (no RPC).
func (s *state) handle(ctx context.Context, id string) (*Sandbox, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &Error{Op: "get", Sandbox: id, Msg: "the provider is closed"}
	}
	h := s.handles[id]
	s.mu.Unlock()
	if h != nil {
		return h, nil
	}
	sb, err := s.client.Sandboxes.FromID(ctx, id, nil)
	if err != nil {
		return nil, ctxErr(ctx, wrapErr("get", id, err))
	}
	if h := s.newHandle(sb, nil); h != nil {
		return h, nil
	}
	sb.Detach()
	return nil, &Error{Op: "get", Sandbox: id, Msg: "the provider is closed"}
}

// forget drops a handle from the cache (the sandbox is gone, for the
// reason why) and detaches it.
func (s *state) forget(h *Sandbox, why string) {
	h.setGone(why)
	s.mu.Lock()
	if s.handles[h.id] == h {
		delete(s.handles, h.id)
	}
	s.mu.Unlock()
	h.detach()
}

// Get returns a running sandbox by id, with one call to Modal (a poll
// that checks it still runs). An unknown or finished sandbox gives an
// error matching driver.ErrNotFound.
func (p *Provider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	if id == "" {
		return nil, &Error{Op: "get", Kind: driver.ErrNotFound, Msg: "empty sandbox id"}
	}
	h, err := p.s.handle(ctx, id)
	if err != nil {
		return nil, err
	}
	code, err := h.poll(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx, err)
		}
		if isGone(err) || isBadID(err) {
			p.s.forget(h, "it no longer exists")
			return nil, &Error{Op: "get", Sandbox: id, Kind: driver.ErrNotFound, Msg: "no such sandbox", Err: err}
		}
		return nil, wrapErr("get", id, err)
	}
	if code != nil {
		p.s.forget(h, exitReason(*code))
		return nil, &Error{Op: "get", Sandbox: id, Kind: driver.ErrNotFound, Msg: "the sandbox has finished: " + exitReason(*code)}
	}
	return h, nil
}

// List returns the running sandboxes of the provider's app that carry the
// provider's tags (those this package created), one page of Modal's list
// per 100 sandboxes.
func (p *Provider) List(ctx context.Context) ([]driver.Sandbox, error) {
	if err := p.checkOpen("list"); err != nil {
		return nil, err
	}
	app, err := p.app(ctx, p.s.cfg.App)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	// Sandboxes just handed out by the pool get the tags List filters on
	// in the background: a List after their Create must see them.
	if err := p.s.waitTagging(ctx, 0); err != nil {
		return nil, err
	}
	tags := map[string]string{tagManaged: tagManagedValue}
	for k, v := range p.s.cfg.Tags {
		tags[k] = v
	}
	seq, err := p.s.client.Sandboxes.List(ctx, &modalsdk.SandboxListParams{AppID: app.AppID, Tags: tags})
	if err != nil {
		return nil, ctxErr(ctx, wrapErr("list", "", err))
	}
	var out []driver.Sandbox
	for sb, err := range seq {
		if err != nil {
			return nil, ctxErr(ctx, wrapErr("list", "", err))
		}
		h := p.s.newHandle(sb, nil)
		if h == nil {
			return nil, &Error{Op: "list", Msg: "the provider is closed"}
		}
		if h.sb != sb {
			sb.Detach() // a handle for it was cached already
		}
		out = append(out, h)
	}
	return out, nil
}

// Destroy terminates a sandbox. Destroying an unknown or finished sandbox
// is not an error.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	h, err := p.s.handle(ctx, id)
	if err != nil {
		return err
	}
	err = h.terminate(ctx)
	if err == nil || isGone(err) || isBadID(err) {
		p.s.forget(h, "it was destroyed")
		return nil
	}
	return ctxErr(ctx, wrapErr("destroy", id, err))
}

// isBadID reports whether Modal refused an id as malformed, which for Get
// and Destroy means no such sandbox.
func isBadID(err error) bool {
	var inv modalsdk.InvalidError
	return errors.As(err, &inv) || codeOf(err) == "InvalidArgument"
}
