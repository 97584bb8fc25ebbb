package imagestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// Default limits of a pull.
const (
	DefaultMaxSize    = 16 << 30 // bytes of unpacked layers per image
	DefaultMaxEntries = 1 << 20  // tar entries per image
)

// PullOptions configure Pull. The zero value (or nil) pulls this
// machine's platform with the Docker config's credentials.
type PullOptions struct {
	// Platform is the "os/arch[/variant]" to pick from a multi-platform
	// image; empty means this machine's (linux/GOARCH).
	Platform string
	// Progress, when set, is called as the pull goes (from one goroutine
	// at a time).
	Progress func(Progress)
	// Keychain supplies registry credentials; nil means
	// authn.DefaultKeychain (the Docker config and its helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport to registries; nil means
	// go-containerregistry's default. Plain HTTP is refused for anything
	// but a registry on this machine, whatever the transport.
	Transport http.RoundTripper
	// MaxSize is the most bytes an image's layers may unpack to
	// (counting the tar streams); 0 means DefaultMaxSize.
	MaxSize int64
	// MaxEntries is the most tar entries an image's layers may hold; 0
	// means DefaultMaxEntries.
	MaxEntries int64
	// Jobs is how many layers are fetched at once; 0 means 3.
	Jobs int
	// Logger receives notes about what unpacking skipped or changed
	// (device nodes, setuid bits); nil discards them.
	Logger *slog.Logger
	// AllowRegistry, when set, is asked about the registry host (with
	// its port, if any: "index.docker.io", "ghcr.io", "localhost:5000")
	// of every registry reference before anything is fetched, or found
	// in the store by it; an error it returns refuses the pull, wrapped
	// in ErrRegistryRefused. A server uses it to keep clients to the
	// registries it trusts (AllowRegistries makes one from a list).
	// References to this machine's files (oci:, docker-archive:) are
	// not asked about.
	AllowRegistry func(registry string) error
	// Anonymous pulls without credentials, whatever Keychain says: a
	// server pulling for its clients then cannot hand them an image only
	// its own credentials could read.
	Anonymous bool
}

// ErrRegistryRefused is returned by Pull for a reference to a registry
// that PullOptions.AllowRegistry refused.
var ErrRegistryRefused = errors.New("imagestore: registry not allowed")

// AllowRegistries returns a PullOptions.AllowRegistry that allows these
// registry hosts (compared without case; "docker.io" also names
// "index.docker.io", Docker Hub's own name) and refuses every other,
// saying which are allowed.
func AllowRegistries(hosts ...string) func(registry string) error {
	allowed := map[string]bool{}
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "docker.io" {
			h = "index.docker.io"
		}
		if h != "" {
			allowed[h] = true
		}
	}
	return func(registry string) error {
		if allowed[strings.ToLower(registry)] {
			return nil
		}
		list := make([]string, 0, len(allowed))
		for h := range allowed {
			list = append(list, h)
		}
		sort.Strings(list)
		if len(list) == 0 {
			return fmt.Errorf("no registry is allowed here")
		}
		return fmt.Errorf("images come only from %s here, not %s", strings.Join(list, ", "), registry)
	}
}

// Progress is a pull's state, as PullOptions.Progress receives it.
type Progress struct {
	Ref        string // the reference being pulled
	Layers     int    // layers of the image (0 until known)
	LayersDone int    // layers in the store, cached or just unpacked
	Cached     int    // layers that were in the store already
	Bytes      int64  // bytes to fetch for the other layers (blob sizes; 0 when unknown)
	BytesDone  int64  // bytes fetched so far
	Done       bool   // the last report of a successful pull
}

// Pull gets the image ref names into the store, or finds it there, and
// returns it. ref is a registry reference ("python:3.12-slim",
// "ghcr.io/org/img:tag", "name@sha256:..."), "oci:DIR[:TAG]" or
// "docker-archive:FILE". A tag is resolved at the registry each time (it
// may have moved), but layers already in the store are not fetched again;
// a digest already in the store needs no registry at all.
func (s *Store) Pull(ctx context.Context, ref string, o *PullOptions) (*Image, error) {
	if o == nil {
		o = &PullOptions{}
	}
	src, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	if src.kind == "registry" && o.AllowRegistry != nil {
		if err := o.AllowRegistry(src.ref.Context().RegistryStr()); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrRegistryRefused, src.key, err)
		}
	}
	want := defaultPlatform()
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("imagestore: platform %q is not os/arch[/variant] (e.g. linux/arm64)", o.Platform)
		}
		want = *p
	}
	wantStr := platformString(want)
	unlock, err := lockFile(ctx, s.storeLock(), false)
	if err != nil {
		return nil, err
	}
	defer unlock()

	pr := &progressReporter{fn: o.Progress, p: Progress{Ref: src.key}}
	if src.digest != "" {
		// A digest names the same bytes forever: the store's copy will do.
		refs, _ := s.readRefs()
		if id := s.byDigest(src.digest, refs, wantStr); id != "" {
			if im, err := s.image(id, refs); err == nil {
				return s.named(ctx, im, src, src.digest, wantStr, pr)
			}
		}
	}
	r, err := src.resolve(ctx, want, o)
	if err != nil {
		return nil, err
	}
	if refs, err := s.readRefs(); err == nil {
		if im, err := s.image(r.id, refs); err == nil {
			if err := checkPlatform(src.key, im.Platform, want); err != nil {
				return nil, err
			}
			return s.named(ctx, im, src, r.resolved, wantStr, pr)
		}
	}
	cfg, err := r.img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: reading the image config: %w", src.key, err)
	}
	platform := wantStr
	if cfg.OS != "" && cfg.Architecture != "" {
		platform = platformString(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
		if err := checkPlatform(src.key, platform, want); err != nil {
			return nil, err
		}
	}
	layers, err := r.layers(cfg)
	if err != nil {
		return nil, err
	}
	maxSize, maxEntries := o.MaxSize, o.MaxEntries
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	lim := newLimits(maxSize, maxEntries)
	pr.p.Layers = len(layers)
	var missing []layerSource
	for _, l := range layers {
		if s.hasLayer(l.diffID) {
			pr.p.Cached++
			pr.p.LayersDone++
			if cl, err := s.layer(l.diffID); err == nil {
				if err := lim.take(cl.Size); err != nil {
					return nil, err
				}
			}
			continue
		}
		missing = append(missing, l)
		if l.size > 0 {
			pr.p.Bytes += l.size
		}
	}
	var declared int64
	for _, l := range missing {
		declared += l.size
	}
	if declared > maxSize {
		return nil, fmt.Errorf("%w: its layers are %d bytes compressed, over the %d-byte limit (PullOptions.MaxSize, --max-size)", ErrTooLarge, declared, maxSize)
	}
	pr.report()
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 3
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, l := range missing {
		g.Go(func() error { return s.ensureLayer(gctx, src.key, l, lim, pr, o.Logger) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	c := cfg.Config
	rec := imageRecord{ID: r.id, Digest: r.digest, Platform: platform, Pulled: time.Now().UTC(),
		Config: Config{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd}}
	for _, l := range layers {
		rec.Layers = append(rec.Layers, layerEntry{Digest: l.digest, DiffID: l.diffID})
	}
	if err := writeJSON(s.imageFile(r.id), rec); err != nil {
		return nil, fmt.Errorf("imagestore: %w", err)
	}
	im, err := s.image(r.id, nil)
	if err != nil {
		return nil, err
	}
	return s.named(ctx, im, src, r.resolved, wantStr, pr)
}

// named records that src names im (for platform) and returns it.
func (s *Store) named(ctx context.Context, im *Image, src *source, resolvedDigest, platform string, pr *progressReporter) (*Image, error) {
	want := refRecord{Ref: src.key, Platform: platform, Resolved: resolvedDigest, ID: im.ID}
	refs, err := s.readRefs()
	if err == nil && !slices.Contains(refs, want) {
		// (A cached pull of an unchanged tag writes nothing.)
		err = s.updateRefs(ctx, func(refs []refRecord) []refRecord {
			for i, r := range refs {
				if r.Ref == src.key && r.Platform == platform {
					refs[i].ID, refs[i].Resolved = im.ID, resolvedDigest
					return refs
				}
			}
			return append(refs, want)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("imagestore: %w", err)
	}
	if refs, err = s.readRefs(); err != nil {
		return nil, err
	}
	if im, err = s.image(im.ID, refs); err != nil {
		return nil, err
	}
	im.Ref = src.key
	pr.mu.Lock()
	pr.p.Layers, pr.p.LayersDone, pr.p.Done = len(im.Layers), len(im.Layers), true
	pr.mu.Unlock()
	pr.report()
	return im, nil
}

// ensureLayer puts one layer in the store unless it is there: under the
// layer's lock, unpacked into tmp/ and renamed into place only once
// complete and verified.
func (s *Store) ensureLayer(ctx context.Context, key string, l layerSource, lim *limits, pr *progressReporter, log *slog.Logger) error {
	unlock, err := lockFile(ctx, filepath.Join(s.dir, "locks", hexOf(l.diffID)+".lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	if s.hasLayer(l.diffID) {
		// Another pull finished it while we waited.
		pr.add(l.size, true)
		return nil
	}
	// What a pull of this layer that died left behind (its lock died
	// with it) is garbage now.
	if stale, _ := filepath.Glob(filepath.Join(s.dir, "tmp", "layer-"+hexOf(l.diffID)+"-*")); len(stale) > 0 {
		for _, d := range stale {
			removeAll(d)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-"+hexOf(l.diffID)+"-")
	if err != nil {
		return fmt.Errorf("imagestore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			removeAll(tmp)
		}
	}()
	var fetched int64
	u, err := unpackLayer(ctx, l, filepath.Join(tmp, "root"), lim, func(n int64) {
		fetched += n
		pr.add(n, false)
	})
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, ErrHostileLayer) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDigestMismatch) {
			return fmt.Errorf("%s: layer %s: %w", key, shortID(l.digestOrDiffID()), err)
		}
		return fmt.Errorf("imagestore: %s: layer %s: %w", key, shortID(l.digestOrDiffID()), err)
	}
	if log != nil {
		for _, n := range u.notes {
			log.Warn(n, "image", key, "layer", shortID(l.digestOrDiffID()))
		}
	}
	if err := commitLayer(tmp, s.layerDir(l.diffID), Layer{Digest: l.digest, DiffID: l.diffID, Size: u.size, Notes: u.notes}, u); err != nil {
		return fmt.Errorf("imagestore: %w", err)
	}
	done = true
	pr.add(l.size-fetched, true)
	return nil
}

// commitLayer completes a layer unpacked (or captured) into the
// temporary directory tmp: its record and its files' owners, its
// permissions, a sync, then a rename to dst, so that a layer directory
// is either complete or absent. The rename's error (fs.ErrExist where
// another process committed dst first) is returned as it is.
func commitLayer(tmp, dst string, meta Layer, u *unpacked) error {
	if err := writeJSON(filepath.Join(tmp, "layer.json"), meta); err != nil {
		return err
	}
	if len(u.owners) > 0 {
		if err := writeJSON(filepath.Join(tmp, "owners.json"), u.owners); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func (l layerSource) digestOrDiffID() string {
	if l.digest != "" {
		return l.digest
	}
	return l.diffID
}

type progressReporter struct {
	mu   sync.Mutex
	fn   func(Progress)
	p    Progress
	last time.Time
}

// add counts n bytes (n may be negative to correct an estimate) and a
// finished layer.
func (r *progressReporter) add(n int64, layerDone bool) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.BytesDone += n
	if layerDone {
		r.p.LayersDone++
	}
	if !layerDone && time.Since(r.last) < 50*time.Millisecond {
		return
	}
	r.last = time.Now()
	r.fn(r.p)
}

func (r *progressReporter) report() {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(r.p)
}

// checkPlatform refuses an image made for another platform than want.
func checkPlatform(key, have string, want v1.Platform) error {
	p, err := v1.ParsePlatform(have)
	if err != nil || p.Satisfies(v1.Platform{OS: want.OS, Architecture: want.Architecture}) {
		return nil
	}
	return fmt.Errorf("imagestore: %s is an image for %s, not %s (choose the platform with PullOptions.Platform or --platform)",
		key, have, platformString(want))
}
