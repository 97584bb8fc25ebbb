package imagestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Built images: an image a provider made by running build steps (a
// Dockerfile's RUN, COPY, ...) on a base image. Each step that changes
// files adds one layer, captured from the writable layer of the sandbox
// that ran it (Builder.Commit); the image after each step is recorded
// under a key made from its parent's and the step (BuildKey), so that a
// later build of the same steps, in any process sharing the store, finds
// every step's result instead of running it again, and a build that adds
// a step reuses the steps before it.
//
// Built images are a cache: no reference names them, so Prune removes
// those no sandbox uses (Use), with their layers, and the next build
// makes them again. List shows them, with Image.Build saying how each
// was made; Remove takes one by id.

// Build says how a built image was made.
type Build struct {
	// Base is the reference of the image the steps were built on, as
	// the caller named it.
	Base string `json:"base"`
	// BaseID is that image's id.
	BaseID string `json:"baseID"`
	// Steps are the steps, in order, up to the one that made this
	// image.
	Steps []string `json:"steps"`
}

// BuildKey is the key of the image made by applying step to the image
// (or the build step) whose key or id is parent; content is the digest
// of whatever the step reads besides its text (the files a COPY step
// copies), or "". It is the built image's id.
func BuildKey(parent, step, content string) string {
	h := sha256.New()
	fmt.Fprintf(h, "compute image build step v1\x00%s\x00%s\x00%s", parent, step, content)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Builder records built images. It holds the store for the build (Prune
// and Remove wait until Close), so that the images it finds stay in
// place while steps are built on them.
type Builder struct {
	s      *Store
	unlock func()
}

// Builder starts a build. The caller closes it.
func (s *Store) Builder(ctx context.Context) (*Builder, error) {
	unlock, err := lockFile(ctx, s.storeLock(), false)
	if err != nil {
		return nil, err
	}
	return &Builder{s: s, unlock: unlock}, nil
}

// Close ends the build.
func (b *Builder) Close() { b.unlock() }

// Find returns the built image with this key, or an error wrapping
// ErrNotFound.
func (b *Builder) Find(key string) (*Image, error) {
	im, err := b.s.image(key, nil)
	if err != nil {
		return nil, err
	}
	if im.Build == nil {
		return nil, fmt.Errorf("%w: %s is not a built image", ErrNotFound, shortID(key))
	}
	return im, nil
}

// HasLayer reports whether the store holds the layer a build step with
// this key made (CommitOptions.Reuse).
func (b *Builder) HasLayer(key string) bool { return b.s.hasLayer(key) }

// Lock keeps other builders, in this process and others, from building
// key until unlock: a builder that finds no image for key locks it, looks
// again (another may have built it meanwhile), and builds it only then,
// so that a step runs once however many build it at the same time.
func (b *Builder) Lock(ctx context.Context, key string) (unlock func(), err error) {
	return lockFile(ctx, filepath.Join(b.s.dir, "locks", "build-"+hexOf(key)+".lock"), true)
}

// CommitOptions say what Commit stores.
type CommitOptions struct {
	// Key is the built image's key (BuildKey): its id.
	Key string
	// Config is the built image's configuration.
	Config Config
	// Build says how it was made.
	Build Build
	// Upper, when not nil, is an overlayfs upper directory (opened
	// O_PATH or read-only) whose files become the image's new top
	// layer: a step's changes to its parent. It is read as hostile
	// input and is not changed, and its whiteouts (0/0 character
	// devices, as overlayfs makes them in an upper directory) and
	// opaque directories become the store's (see Whiteouts). Nil adds
	// no layer: a step that changes only the configuration.
	Upper *os.File
	// Reuse adds the layer the store holds under Key already (a step's
	// layer whose image record Prune removed while another image still
	// used the layer: see HasLayer), instead of Upper.
	Reuse bool
	// Skip lists paths, relative to Upper, that are left out of the
	// layer (files the sandbox itself made there, such as
	// etc/resolv.conf).
	Skip []string
	// MaxSize and MaxEntries bound the layer as PullOptions' do a pull;
	// 0 means DefaultMaxSize and DefaultMaxEntries.
	MaxSize, MaxEntries int64
}

// Commit stores the image made of parent's layers (and, with Upper, a
// new layer on top) under o.Key, and returns it. The layer is copied
// into a temporary directory and renamed into place once complete, as a
// pulled layer is; a key already stored is kept as it is.
func (b *Builder) Commit(ctx context.Context, parent *Image, o CommitOptions) (*Image, error) {
	s := b.s
	if o.Key == "" || !isIDPrefix(o.Key) || len(hexOf(o.Key)) != 64 {
		return nil, fmt.Errorf("imagestore: commit: key %q is not a sha256 digest (see BuildKey)", o.Key)
	}
	if im, err := b.Find(o.Key); err == nil {
		return im, nil
	}
	rec := imageRecord{ID: o.Key, Platform: parent.Platform, Config: o.Config, Pulled: time.Now().UTC(), Build: &o.Build}
	for _, l := range parent.Layers {
		if !s.hasLayer(l.DiffID) {
			return nil, fmt.Errorf("imagestore: commit: layer %s of the parent image is gone; build again", shortID(l.DiffID))
		}
		rec.Layers = append(rec.Layers, layerEntry{Digest: l.Digest, DiffID: l.DiffID})
	}
	switch {
	case o.Reuse:
		if !s.hasLayer(o.Key) {
			return nil, fmt.Errorf("imagestore: commit: no layer %s to reuse", shortID(o.Key))
		}
		rec.Layers = append(rec.Layers, layerEntry{DiffID: o.Key})
	case o.Upper != nil:
		if err := b.commitLayer(ctx, o); err != nil {
			return nil, err
		}
		rec.Layers = append(rec.Layers, layerEntry{DiffID: o.Key})
	}
	if err := writeJSON(s.imageFile(o.Key), rec); err != nil {
		return nil, fmt.Errorf("imagestore: %w", err)
	}
	return b.Find(o.Key)
}

// commitLayer stores o.Upper as the layer o.Key, under the layer's lock.
func (b *Builder) commitLayer(ctx context.Context, o CommitOptions) error {
	s := b.s
	unlock, err := lockFile(ctx, filepath.Join(s.dir, "locks", hexOf(o.Key)+".lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	if s.hasLayer(o.Key) {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-"+hexOf(o.Key)+"-")
	if err != nil {
		return fmt.Errorf("imagestore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			removeAll(tmp)
		}
	}()
	maxSize, maxEntries := o.MaxSize, o.MaxEntries
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	u, err := captureUpper(ctx, o.Upper, filepath.Join(tmp, "root"), o.Skip, newLimits(maxSize, maxEntries))
	if err != nil {
		return fmt.Errorf("imagestore: capturing a build step's files: %w", err)
	}
	err = commitLayer(tmp, s.layerDir(o.Key), Layer{DiffID: o.Key, Size: u.size, Notes: u.notes}, u)
	if errors.Is(err, fs.ErrExist) {
		return nil // committed meanwhile by another process sharing the store
	}
	if err != nil {
		return fmt.Errorf("imagestore: %w", err)
	}
	done = true
	return nil
}
