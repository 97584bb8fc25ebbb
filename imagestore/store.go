// Package imagestore is a local, content-addressed store of OCI images
// unpacked for use as read-only root layers.
//
// Pull fetches an image from a registry ("python:3.12-slim",
// "ghcr.io/org/img:tag", "name@sha256:..."), an OCI layout
// ("oci:DIR[:TAG]") or a "docker save" archive ("docker-archive:FILE"),
// picks this machine's platform from a multi-platform index, and unpacks
// each layer once into a directory named by its diff_id, after checking
// the layer's compressed digest against the manifest and its unpacked
// stream against the image config. Image.LayerDirs lists those
// directories bottom to top, ready as overlayfs lowerdirs (mounted with
// the "userxattr" option; see Whiteouts below).
//
// The store is safe for concurrent use by goroutines and processes: a
// layer is unpacked under a file lock into a temporary directory and
// renamed into place when complete, so a pull that fails, is cancelled or
// dies leaves nothing a later pull could take for a finished layer.
//
// Layers are hostile input. Entries that climb out with "..", hardlinks
// to anything not already in the layer, and directories that are dangling
// symlinks are refused (ErrHostileLayer); absolute paths are taken as
// relative to the layer root; every path is resolved with
// openat2(RESOLVE_IN_ROOT), so symlinks unpacked earlier cannot redirect
// a write outside; device nodes are skipped with a note; setuid and setgid
// bits are cleared; extended attributes in the tar are ignored; a pull
// stops at PullOptions.MaxSize bytes and MaxEntries entries (ErrTooLarge);
// a layer that is not what its digests say is refused
// (ErrDigestMismatch).
//
// # Whiteouts
//
// A layer's ".wh.NAME" becomes an empty regular file NAME carrying the
// extended attribute user.overlay.whiteout, in a directory marked
// user.overlay.opaque="x"; ".wh..wh..opq" marks its directory
// user.overlay.opaque="y". Overlayfs honours these in lower layers when
// mounted with -o userxattr (Linux 6.8 and later), which is what an
// unprivileged mount in a user namespace uses. Character-device
// whiteouts would need mknod, which an unprivileged unpacker may not do.
// The cache's file system must support user extended attributes (ext4,
// xfs, btrfs, tmpfs since Linux 6.6).
//
// # Owners and use
//
// Unpacked files belong to the user who pulled; the owners the layer's
// tar named are listed by Layer.Owners for a provider to map. A provider
// that mounts an image calls Use, so that Remove and Prune, in any
// process, leave the image's layers in place until it releases them.
//
// # Built images
//
// A provider that builds images from steps (a Dockerfile's RUN, COPY, ...)
// records each step's result with a Builder: the files the step changed,
// read from its sandbox's overlayfs upper directory, become a layer, and
// the image after the step is stored under a key made from its parent's
// and the step's (BuildKey), so the step never runs twice. Built images
// carry Image.Build; they are a cache, which Prune empties of what no
// sandbox uses.
//
// The store works on Linux only (it exists to feed overlayfs); Open
// fails elsewhere.
package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// ErrNotFound is returned by Get, Remove and Use when the store holds no
// image by that reference or id.
var ErrNotFound = errors.New("imagestore: image not in the store")

// ErrInUse is returned by Remove for an image that a Use holds (a running
// sandbox's root).
var ErrInUse = errors.New("imagestore: image in use")

var errUnsupported = fmt.Errorf("imagestore: images need Linux (overlayfs), not %s", runtime.GOOS)

// Store is a directory of unpacked images. Its methods are safe for
// concurrent use, also by several processes sharing the directory.
type Store struct {
	dir string
}

// DefaultDir is the store's directory unless told otherwise:
// $COMPUTE_CACHE_DIR when set, otherwise "compute/images" in the user's
// cache directory (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on
// Linux).
func DefaultDir() (string, error) {
	if d := os.Getenv("COMPUTE_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("imagestore: no cache directory: %w (set COMPUTE_CACHE_DIR)", err)
	}
	return filepath.Join(d, "compute", "images"), nil
}

// Open opens the store in dir, creating it if needed.
func Open(dir string) (*Store, error) {
	if !supported {
		return nil, errUnsupported
	}
	if dir == "" {
		return nil, errors.New("imagestore: Open needs a directory (see DefaultDir)")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"images", "layers", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("imagestore: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Image is an image in the store.
type Image struct {
	// Ref is the reference the image was pulled or found by, in its
	// canonical form ("python:3.12-slim", "ghcr.io/org/img:tag",
	// "oci:/abs/dir:tag", "docker-archive:/abs/file"); empty when found
	// by id.
	Ref string
	// Refs are all the references that name the image in the store.
	Refs []string
	// ID is the digest of the image's config ("sha256:..."), the same
	// for the image from any source.
	ID string
	// Digest is the digest of the image's manifest, what
	// "name@sha256:..." names; empty for a docker-archive source, which
	// carries none.
	Digest string
	// Platform is the image's "os/arch[/variant]".
	Platform string
	// Config is what the image says to run, and how.
	Config Config
	// Layers are the unpacked layers, bottom to top.
	Layers []Layer
	// Size is the bytes of the layers' regular files.
	Size int64
	// Pulled is when the image was first stored (built, for a built
	// image).
	Pulled time.Time
	// Build says how a built image was made (see Builder); nil for an
	// image pulled from a source.
	Build *Build
}

// Config is the part of an image's config a sandbox applies.
type Config struct {
	Env        []string `json:"env,omitempty"`        // KEY=VALUE, the image's environment
	WorkingDir string   `json:"workingDir,omitempty"` // the directory programs start in
	User       string   `json:"user,omitempty"`       // user[:group], by name or number
	Entrypoint []string `json:"entrypoint,omitempty"` // what runs the image's command
	Cmd        []string `json:"cmd,omitempty"`        // the default command
}

// Layer is one unpacked layer.
type Layer struct {
	// Digest is the digest of the layer's blob as the manifest names it
	// (empty for a docker-archive source).
	Digest string `json:"digest,omitempty"`
	// DiffID is the digest of the layer's tar: the store's key for it.
	// A layer a build step made has no tar: its DiffID is the step's
	// key (BuildKey).
	DiffID string `json:"diffID"`
	// Dir is the unpacked tree.
	Dir string `json:"-"`
	// Size is the bytes of its regular files.
	Size int64 `json:"size"`
	// Notes says what unpacking skipped or changed (device nodes,
	// setuid bits).
	Notes []string `json:"notes,omitempty"`
}

// Owners lists the paths of the layer whose tar entries named an owner
// other than root. The store does not chown (an unprivileged unpacker
// cannot, and a sandbox maps its own ids), so a provider that honours an
// image's users applies these.
func (l *Layer) Owners() ([]Owner, error) {
	var owners []Owner
	err := readJSON(filepath.Join(filepath.Dir(l.Dir), "owners.json"), &owners)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return owners, err
}

// LayerDirs lists the unpacked layer directories, bottom to top.
// Overlayfs wants its lowerdir option top first: reverse them.
func (im *Image) LayerDirs() []string {
	dirs := make([]string, len(im.Layers))
	for i, l := range im.Layers {
		dirs[i] = l.Dir
	}
	return dirs
}

// imageRecord is images/ID.json.
type imageRecord struct {
	ID       string       `json:"id"`
	Digest   string       `json:"digest,omitempty"`
	Platform string       `json:"platform"`
	Config   Config       `json:"config"`
	Layers   []layerEntry `json:"layers"`
	Pulled   time.Time    `json:"pulled"`
	Build    *Build       `json:"build,omitempty"`
}

type layerEntry struct {
	Digest string `json:"digest,omitempty"`
	DiffID string `json:"diffID"`
}

// refRecord is an entry of refs.json: a reference, for one platform,
// names an image.
type refRecord struct {
	Ref      string `json:"ref"`
	Platform string `json:"platform"`
	Resolved string `json:"resolved,omitempty"` // the digest the ref resolved to (an index's, or the manifest's)
	ID       string `json:"id"`
}

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

func (s *Store) storeLock() string          { return filepath.Join(s.dir, "lock") }
func (s *Store) refsFile() string           { return filepath.Join(s.dir, "refs.json") }
func (s *Store) imageFile(id string) string { return filepath.Join(s.dir, "images", hexOf(id)+".json") }
func (s *Store) imageLock(id string) string { return filepath.Join(s.dir, "images", hexOf(id)+".lock") }
func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.dir, "layers", hexOf(diffID))
}

// writeJSON writes v to path atomically: readers see the old file or the
// new one, never a part.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("imagestore: %s is damaged (%v); remove it and pull again", path, err)
	}
	return nil
}

func (s *Store) readRefs() ([]refRecord, error) {
	var refs []refRecord
	err := readJSON(s.refsFile(), &refs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return refs, err
}

// updateRefs changes refs.json under its own lock.
func (s *Store) updateRefs(ctx context.Context, fn func([]refRecord) []refRecord) error {
	unlock, err := lockFile(ctx, filepath.Join(s.dir, "refs.lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	refs = fn(refs)
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Ref != refs[j].Ref {
			return refs[i].Ref < refs[j].Ref
		}
		return refs[i].Platform < refs[j].Platform
	})
	return writeJSON(s.refsFile(), refs)
}

// image loads the image with this id, with the references naming it.
func (s *Store) image(id string, refs []refRecord) (*Image, error) {
	var rec imageRecord
	if err := readJSON(s.imageFile(id), &rec); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	im := &Image{ID: rec.ID, Digest: rec.Digest, Platform: rec.Platform, Config: rec.Config, Pulled: rec.Pulled, Build: rec.Build}
	for _, le := range rec.Layers {
		l, err := s.layer(le.DiffID)
		if err != nil {
			return nil, fmt.Errorf("imagestore: image %s: layer %s is missing (%v); pull it again", shortID(id), shortID(le.DiffID), err)
		}
		l.Digest = le.Digest
		im.Layers = append(im.Layers, *l)
		im.Size += l.Size
	}
	for _, r := range refs {
		if r.ID == rec.ID && !contains(im.Refs, r.Ref) {
			im.Refs = append(im.Refs, r.Ref)
		}
	}
	return im, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Store) layer(diffID string) (*Layer, error) {
	dir := s.layerDir(diffID)
	var l Layer
	if err := readJSON(filepath.Join(dir, "layer.json"), &l); err != nil {
		return nil, err
	}
	l.Dir = filepath.Join(dir, "root")
	return &l, nil
}

func (s *Store) hasLayer(diffID string) bool {
	_, err := os.Stat(filepath.Join(s.layerDir(diffID), "layer.json"))
	return err == nil
}

func shortID(id string) string {
	h := hexOf(id)
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// List returns the images in the store, newest first.
func (s *Store) List() ([]*Image, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		im, err := s.image("sha256:"+name, refs)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pulled.After(out[j].Pulled) })
	return out, nil
}

// Get returns the image that ref names in the store, for this machine's
// platform, without reaching any registry: a reference as Pull takes it
// ("python:3.12-slim", "name@sha256:...", "oci:DIR:TAG"), an image id
// ("sha256:...") or a unique prefix of one (at least 4 hex digits). It
// returns an error wrapping ErrNotFound when nothing matches. What Get
// returns may be removed at any time; Use keeps it.
func (s *Store) Get(ref string) (*Image, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	id, name, err := s.find(ref, refs, defaultPlatform().String())
	if err != nil {
		return nil, err
	}
	im, err := s.image(id, refs)
	if err != nil {
		return nil, err
	}
	im.Ref = name
	return im, nil
}

// find resolves ref to an image id: by reference for the platform, by
// the digest a reference resolved to, by manifest digest, or by id
// prefix.
func (s *Store) find(ref string, refs []refRecord, platform string) (id, name string, err error) {
	if isIDPrefix(ref) {
		want := hexOf(strings.ToLower(ref))
		entries, err := os.ReadDir(filepath.Join(s.dir, "images"))
		if err != nil {
			return "", "", err
		}
		var found []string
		for _, e := range entries {
			if h, ok := strings.CutSuffix(e.Name(), ".json"); ok && strings.HasPrefix(h, want) {
				found = append(found, "sha256:"+h)
			}
		}
		switch len(found) {
		case 1:
			return found[0], "", nil
		case 0:
		default:
			return "", "", fmt.Errorf("imagestore: %q is the start of %d image ids; give more of it", ref, len(found))
		}
		if !strings.HasPrefix(ref, "sha256:") {
			// Hex that names no id may still be a reference ("abcd:1").
			goto byRef
		}
		// A manifest digest.
		if id := s.byDigest(ref, refs, platform); id != "" {
			return id, "", nil
		}
		return "", "", fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
byRef:
	src, err := parseRef(ref)
	if err != nil {
		return "", "", err
	}
	for _, r := range refs {
		if r.Ref == src.key && r.Platform == platform {
			return r.ID, src.key, nil
		}
	}
	if src.digest != "" {
		if id := s.byDigest(src.digest, refs, platform); id != "" {
			return id, src.key, nil
		}
	}
	return "", "", fmt.Errorf("%w: %s (for %s); pull it first", ErrNotFound, src.key, platform)
}

func (s *Store) byDigest(digest string, refs []refRecord, platform string) string {
	for _, r := range refs {
		if r.Resolved == digest && r.Platform == platform {
			return r.ID
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.dir, "images"))
	for _, e := range entries {
		h, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		var rec imageRecord
		if readJSON(filepath.Join(s.dir, "images", e.Name()), &rec) == nil && rec.Digest == digest {
			return "sha256:" + h
		}
	}
	return ""
}

func isIDPrefix(s string) bool {
	h := strings.TrimPrefix(strings.ToLower(s), "sha256:")
	if len(h) < 4 || len(h) > 64 {
		return false
	}
	for _, c := range h {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// Use marks im in use until release is called: Remove refuses it and
// Prune leaves it and its layers in place, in this process and in others
// (the mark is a shared file lock, dropped if the process dies). A
// provider holds it for as long as a sandbox's root is mounted from the
// image.
func (s *Store) Use(ctx context.Context, im *Image) (release func(), err error) {
	unlock, err := lockFile(ctx, s.storeLock(), false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	release, err = lockFile(ctx, s.imageLock(im.ID), false)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.imageFile(im.ID)); err != nil {
		release()
		return nil, fmt.Errorf("%w: %s was removed", ErrNotFound, shortID(im.ID))
	}
	return release, nil
}

// Remove removes the reference ref (for every platform) from the store,
// and the images only it named, with their layers that no other image
// uses. ref may also be an image id (or a unique prefix), which removes
// that image and every reference to it. An image that a Use holds is
// not removed: the error wraps ErrInUse.
func (s *Store) Remove(ctx context.Context, ref string) error {
	unlock, err := lockFile(ctx, s.storeLock(), true)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	var drop func(r refRecord) bool
	byID := ""
	if isIDPrefix(ref) {
		id, name, err := s.find(ref, refs, defaultPlatform().String())
		if err != nil && strings.HasPrefix(ref, "sha256:") {
			return err
		}
		if err == nil && name == "" {
			byID = id
		}
	}
	if byID != "" {
		drop = func(r refRecord) bool { return r.ID == byID }
		if err := s.removeImage(byID, inUseGrace); err != nil {
			return err
		}
	} else {
		src, err := parseRef(ref)
		if err != nil {
			return err
		}
		found := false
		for _, r := range refs {
			if r.Ref == src.key {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%w: %s", ErrNotFound, src.key)
		}
		drop = func(r refRecord) bool { return r.Ref == src.key }
		// The images it names, unless another reference names them too.
		for _, r := range refs {
			if !drop(r) {
				continue
			}
			other := false
			for _, o := range refs {
				if o.ID == r.ID && !drop(o) {
					other = true
				}
			}
			if !other {
				if err := s.removeImage(r.ID, inUseGrace); err != nil {
					return err
				}
			}
		}
	}
	if err := s.updateRefs(ctx, func(rs []refRecord) []refRecord {
		out := rs[:0]
		for _, r := range rs {
			if !drop(r) {
				out = append(out, r)
			}
		}
		return out
	}); err != nil {
		return err
	}
	_, err = s.pruneLayers()
	return err
}

// inUseGrace is how long removing an image waits for a holder of its
// lock to go before saying it is in use. A Use's lock is a descriptor;
// a process forked at any moment (a sandbox's agent starting, in this
// process or one sharing the store) holds copies of every descriptor
// until its exec closes them, so a lock released a moment ago can
// still look held. A sandbox that really runs on the image holds it
// far longer.
const inUseGrace = 250 * time.Millisecond

// testHookBusy, when set (by tests), is called when removing an image
// first finds its lock held.
var testHookBusy func(id string)

// removeImage deletes an image record unless it is in use, waiting up
// to grace for a holder to go. The caller holds the store lock
// exclusively (no new Use can start).
func (s *Store) removeImage(id string, grace time.Duration) error {
	release, ok, err := tryLockFile(s.imageLock(id), true)
	if err == nil && !ok && testHookBusy != nil {
		testHookBusy(id)
	}
	for wait, waited := time.Millisecond, time.Duration(0); err == nil && !ok && waited < grace; wait *= 2 {
		wait = min(wait, grace-waited)
		time.Sleep(wait)
		waited += wait
		release, ok, err = tryLockFile(s.imageLock(id), true)
	}
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s is the root of a running sandbox; destroy it first", ErrInUse, shortID(id))
	}
	defer release()
	if err := os.Remove(s.imageFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(s.imageLock(id))
	return nil
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Images int   // images no reference named
	Layers int   // layers no image used
	Bytes  int64 // bytes of the layers' files
}

// Prune removes images that no reference names (a tag pulled again
// after it moved leaves its old image unnamed; every built image, see
// Builder) and not in use, layers that no image uses, and whatever
// interrupted pulls and builds left behind.
func (s *Store) Prune(ctx context.Context) (PruneResult, error) {
	var res PruneResult
	unlock, err := lockFile(ctx, s.storeLock(), true)
	if err != nil {
		return res, err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return res, err
	}
	named := map[string]bool{}
	for _, r := range refs {
		named[r.ID] = true
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return res, err
	}
	// Images found in use are tried again once, together, after the
	// grace a released lock may need (see inUseGrace): one wait for
	// all, not one per image a running sandbox really holds.
	var busy []string
	for _, e := range entries {
		h, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(h, ".") || named["sha256:"+h] {
			continue
		}
		busy = append(busy, "sha256:"+h)
	}
	for pass := 0; pass < 2 && len(busy) > 0; pass++ {
		if pass > 0 {
			time.Sleep(inUseGrace)
		}
		still := busy[:0]
		for _, id := range busy {
			err := s.removeImage(id, 0)
			if errors.Is(err, ErrInUse) {
				still = append(still, id)
				continue
			}
			if err != nil {
				return res, err
			}
			res.Images++
		}
		busy = still
	}
	lr, err := s.pruneLayers()
	res.Layers, res.Bytes = lr.Layers, lr.Bytes
	return res, err
}

// pruneLayers removes layers no image record uses, temporary
// directories and layer locks. The caller holds the store lock
// exclusively, so no pull is running.
func (s *Store) pruneLayers() (PruneResult, error) {
	var res PruneResult
	used := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return res, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var rec imageRecord
		if err := readJSON(filepath.Join(s.dir, "images", e.Name()), &rec); err != nil {
			return res, err
		}
		for _, l := range rec.Layers {
			used[hexOf(l.DiffID)] = true
		}
	}
	layers, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return res, err
	}
	for _, e := range layers {
		if used[e.Name()] {
			continue
		}
		if l, err := s.layer("sha256:" + e.Name()); err == nil {
			res.Bytes += l.Size
		}
		if err := removeAll(filepath.Join(s.dir, "layers", e.Name())); err != nil {
			return res, err
		}
		res.Layers++
	}
	for _, sub := range []string{"tmp", "locks"} {
		left, _ := os.ReadDir(filepath.Join(s.dir, sub))
		for _, e := range left {
			if err := removeAll(filepath.Join(s.dir, sub, e.Name())); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// removeAll is os.RemoveAll for trees with read-only directories (an
// unpacked layer keeps the modes its image gave).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
