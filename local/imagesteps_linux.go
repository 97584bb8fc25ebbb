//go:build linux

package local

// Image steps (CreateOptions.ImageSteps) on the local provider, built
// once and cached in the image store (imagestore.Builder).
//
// Each step has a key made from its parent's key (the base image's id
// for the first) and its own text (and, for COPY, the copied files'
// content): imagestore.BuildKey. A step that changes files (RUN, COPY,
// and the directories WORKDIR steps name, made by the next of those or
// at the end) runs once, in a sandbox of its own started on the image so
// far, whose overlay's writable layer the agent hands the host
// (agentproto.ImageRoot.Capture); once the sandbox is gone, the store
// copies that layer in as the step's layer and records the image after
// the step under the step's key. ENV and WORKDIR change the
// configuration only. A later Create with the same steps, in this
// process or another sharing the store, finds the last step's image and
// runs nothing; one that adds a step finds the steps before it.
//
// The build sandbox has the provider's limits (memory, processes, disk:
// the writable layer is in its own tmpfs of DiskSize bytes, so a step
// cannot fill the host's disk), the host's network unless
// Options.ImageBuildNetwork says none, and no CreateOptions of the
// Create's: the built image is the same whoever builds it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// buildTimeout bounds one build step (ctx may end it sooner).
const buildTimeout = time.Hour

// generatedFiles are files the agent writes into every image root (the
// sandbox's identity): left out of a step's layer, as Docker leaves out
// the ones it mounts.
var generatedFiles = []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"}

// holdImage opens opts.Image and, with opts.ImageSteps, the image the
// steps make on it (built now where the store does not hold it yet),
// held in use until released.
func (p *Provider) holdImage(ctx context.Context, opts *driver.CreateOptions) (*sandboxImage, error) {
	base, err := p.openImage(ctx, opts.Image)
	if err != nil || len(opts.ImageSteps) == 0 {
		return base, err
	}
	img, err := p.buildImage(ctx, base, opts)
	base.release()
	return img, err
}

// buildStep is what a build sandbox does: the directories WORKDIR steps
// named, then the command of a RUN step or the files of a COPY step.
type buildStep struct {
	num   int    // the step's number, from 1
	text  string // "RUN ...", for errors
	dirs  []string
	run   string
	files []driver.CopyFile
	dir   string // the working directory
}

// buildImage finds or builds the image opts.ImageSteps make on base and
// returns it held in use.
func (p *Provider) buildImage(ctx context.Context, base *sandboxImage, opts *driver.CreateOptions) (*sandboxImage, error) {
	st, err := p.imageStore()
	if err != nil {
		return nil, err
	}
	b, err := st.Builder(ctx)
	if err != nil {
		return nil, fmt.Errorf("local: image %s: %w", opts.Image, err)
	}
	defer b.Close()
	cur := base.im
	cfg := cur.Config
	cfg.Env = slices.Clone(cfg.Env)
	key := cur.ID
	dir := base.workingDir()
	var pending []string // WORKDIR directories not made yet
	var done []string
	for i, step := range opts.ImageSteps {
		instr, arg, err := driver.ParseImageStep(step)
		if err != nil {
			return nil, fmt.Errorf("local: image %s: step %d (%.80q): %w", opts.Image, i+1, step, err)
		}
		bs := buildStep{num: i + 1, text: instr + " " + arg}
		content := ""
		switch instr {
		case "ENV":
			k, v, _ := strings.Cut(arg, "=")
			v = os.Expand(v, func(name string) string { return envOf(cfg.Env, name) })
			cfg.Env = slices.DeleteFunc(cfg.Env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
			cfg.Env = append(cfg.Env, k+"="+v)
		case "WORKDIR":
			if !path.IsAbs(arg) {
				arg = path.Join(orDefault(dir, "/"), arg)
			}
			dir = path.Clean(arg)
			cfg.WorkingDir = dir
			pending = append(pending, dir)
		case "RUN":
			bs.run = arg
		case "COPY":
			if bs.files, err = driver.ResolveCopy(opts.ImageContext, arg, dir); err != nil {
				return nil, fmt.Errorf("local: image %s: step %d (%.80s): %w", opts.Image, i+1, step, err)
			}
			content = copyDigest(bs.files)
		}
		key = imagestore.BuildKey(key, bs.text, content)
		done = append(done, bs.text)
		last := i == len(opts.ImageSteps)-1
		if (instr == "ENV" || instr == "WORKDIR") && !last {
			continue
		}
		bs.dirs, bs.dir = pending, dir
		im, err := p.buildOnce(ctx, b, cur, key, cfg, imagestore.Build{Base: opts.Image, BaseID: base.im.ID, Steps: slices.Clone(done)}, bs)
		if err != nil {
			return nil, fmt.Errorf("local: image %s: %w", opts.Image, err)
		}
		cur, pending = im, nil
	}
	release, err := st.Use(ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("local: image %s: %w", opts.Image, err)
	}
	ref := fmt.Sprintf("%s + %d steps", opts.Image, len(opts.ImageSteps))
	return &sandboxImage{ref: ref, im: cur, release: sync.OnceFunc(release)}, nil
}

// buildOnce returns the image key names, building it from parent with
// bs unless the store has it: under the key's lock, so that it is built
// once however many build it at the same time.
func (p *Provider) buildOnce(ctx context.Context, b *imagestore.Builder, parent *imagestore.Image, key string, cfg imagestore.Config, info imagestore.Build, bs buildStep) (*imagestore.Image, error) {
	if im, err := b.Find(key); err == nil {
		return im, nil
	}
	unlock, err := b.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if im, err := b.Find(key); err == nil {
		return im, nil // built meanwhile
	}
	// A step's layer holds at most what its sandbox's disk could (a
	// sparse file aside): bounded so, a hostile step cannot make the copy
	// fill the host's disk.
	commit := imagestore.CommitOptions{Key: key, Config: cfg, Build: info, Skip: generatedFiles, MaxSize: p.opts.DiskSize}
	if bs.run == "" && bs.files == nil && len(bs.dirs) == 0 {
		return b.Commit(ctx, parent, commit) // configuration only
	}
	if b.HasLayer(key) {
		// The step's layer outlived its image record (pruned while a
		// later step's image used it): the step need not run again.
		commit.Reuse = true
		return b.Commit(ctx, parent, commit)
	}
	if len(parent.Layers)+1 > agentproto.MaxImageLayers {
		return nil, fmt.Errorf("step %d (%.80s) would make layer %d, more than the %d a local sandbox mounts; merge RUN steps with &&: %w", bs.num, bs.text, len(parent.Layers)+1, agentproto.MaxImageLayers, driver.ErrUnsupported)
	}
	upper, err := p.runBuildStep(ctx, parent, cfg, bs)
	if err != nil {
		return nil, err
	}
	defer upper.Close()
	commit.Upper = upper
	im, err := b.Commit(ctx, parent, commit)
	if err != nil {
		return nil, fmt.Errorf("step %d (%.80s): %w", bs.num, bs.text, err)
	}
	return im, nil
}

// runBuildStep runs bs in a sandbox of its own on parent and returns its
// writable layer, once the sandbox is gone.
func (p *Provider) runBuildStep(ctx context.Context, parent *imagestore.Image, cfg imagestore.Config, bs buildStep) (*os.File, error) {
	im := *parent
	im.Config = cfg
	img := &sandboxImage{ref: bs.text, im: &im, release: func() {}, capture: true}
	network := p.opts.ImageBuildNetwork != driver.NetworkNone
	s, err := p.startCancelable(ctx, network, nil, img)
	if err != nil {
		return nil, fmt.Errorf("step %d (%.80s): starting its sandbox: %w", bs.num, bs.text, err)
	}
	upper := s.upper
	s.upper = nil
	ok := false
	defer func() {
		s.destroy()
		if !ok && upper != nil {
			upper.Close()
		}
	}()
	if upper == nil {
		return nil, fmt.Errorf("step %d (%.80s): the sandbox's agent did not hand over its writable layer", bs.num, bs.text)
	}
	if err := s.activate(ctx, newID(), &driver.CreateOptions{Timeout: buildTimeout, Dir: "/"}); err != nil {
		return nil, fmt.Errorf("step %d (%.80s): %w", bs.num, bs.text, err)
	}
	fsys := s.FileSystem()
	for _, d := range bs.dirs {
		if err := fsys.MkdirAll(ctx, d); err != nil {
			return nil, fmt.Errorf("step %d (%.80s): WORKDIR %s: %w", bs.num, bs.text, d, err)
		}
	}
	switch {
	case bs.run != "":
		out := &tailBuffer{max: 4 << 10}
		proc, err := s.Start(ctx, &driver.ExecRequest{Argv: []string{"/bin/sh", "-c", bs.run}, Dir: orDefault(bs.dir, "/"), Stdout: out, Stderr: out})
		if err != nil {
			return nil, fmt.Errorf("step %d (%.80s): %w", bs.num, bs.text, err)
		}
		code, err := proc.Wait()
		if err != nil {
			return nil, fmt.Errorf("step %d (%.80s): %w", bs.num, bs.text, err)
		}
		if code != 0 {
			return nil, &StepError{Step: bs.num, Text: bs.text, ExitCode: code, Output: out.String()}
		}
	case bs.files != nil:
		if err := copyFiles(ctx, s, bs.files); err != nil {
			return nil, fmt.Errorf("step %d (%.80s): %w", bs.num, bs.text, err)
		}
	}
	// Nothing of the step may still be writing when its layer is read.
	s.destroy()
	ok = true
	return upper, nil
}

// StepError is a build step (CreateOptions.ImageSteps) that failed: its
// command exited with a code other than 0. Nothing of it is cached.
type StepError struct {
	Step     int    // the step's number, from 1
	Text     string // the step ("RUN make")
	ExitCode int
	Output   string // the end of what it wrote (stdout and stderr, at most 4 KiB)
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %d (%.80s) exited with code %d; the end of its output:\n%s", e.Step, e.Text, e.ExitCode, e.Output)
}

// copyFiles writes a COPY step's files into s, through the agent (which
// resolves every path inside the image: a destination under a link of
// the image's goes where the link leads there), then gives them their
// modes with the image's chmod where they need another than the agent
// gives (0644 for files, 0755 for directories).
func copyFiles(ctx context.Context, s *sandbox, files []driver.CopyFile) error {
	fsys := s.FileSystem()
	modes := map[fs.FileMode][]string{}
	for _, f := range files {
		if f.Mode.IsDir() {
			if err := fsys.MkdirAll(ctx, f.Path); err != nil {
				return err
			}
			if f.Mode.Perm() != 0o755 {
				modes[f.Mode.Perm()] = append(modes[f.Mode.Perm()], f.Path)
			}
			continue
		}
		if err := fsys.MkdirAll(ctx, path.Dir(f.Path)); err != nil {
			return err
		}
		if err := fsys.WriteFile(ctx, f.Path, bytes.NewReader(f.Data)); err != nil {
			return err
		}
		if f.Mode.Perm() != 0o644 {
			modes[f.Mode.Perm()] = append(modes[f.Mode.Perm()], f.Path)
		}
	}
	perms := make([]fs.FileMode, 0, len(modes))
	for m := range modes {
		perms = append(perms, m)
	}
	sort.Slice(perms, func(i, j int) bool { return perms[i] < perms[j] })
	for _, m := range perms {
		paths := modes[m]
		for len(paths) > 0 {
			n := min(len(paths), 500)
			out := &tailBuffer{max: 2 << 10}
			argv := append([]string{"chmod", strconv.FormatUint(uint64(m), 8)}, paths[:n]...)
			proc, err := s.Start(ctx, &driver.ExecRequest{Argv: argv, Dir: "/", Stdout: out, Stderr: out})
			if errors.Is(err, driver.ErrNotFound) {
				return fmt.Errorf("the files need mode %o and the image has no chmod to give it; copy files with modes 0644 and directories 0755, or use an image with chmod: %w", m, err)
			}
			if err != nil {
				return err
			}
			if code, err := proc.Wait(); err != nil || code != 0 {
				return fmt.Errorf("chmod %o: exit %d %v: %s", m, code, err, out.String())
			}
			paths = paths[n:]
		}
	}
	return nil
}

// copyDigest is what the cache key of a COPY step holds of its files.
func copyDigest(files []driver.CopyFile) string {
	h := sha256.New()
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(h, "%q %o %x\n", f.Path, uint32(f.Mode), sum)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// envOf is the value of name in a KEY=VALUE list, or "".
func envOf(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// takeUpper keeps the writable layer an image build step's agent sent
// with its ready reply (agentproto.ImageRoot.Capture) for the build, and
// refuses descriptors that were not asked for.
func (s *sandbox) takeUpper(cfg *agentproto.Config, oob []byte) error {
	if len(oob) == 0 {
		return nil
	}
	fds, err := agentproto.ParseRights(oob)
	if err != nil {
		return fmt.Errorf("local: sandbox setup: %w", err)
	}
	if cfg.Image == nil || !cfg.Image.Capture || len(fds) != 1 {
		closeFDs(fds)
		return fmt.Errorf("local: sandbox setup: the agent sent %d descriptors that were not asked for", len(fds))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		closeFDs(fds)
		return fmt.Errorf("local: sandbox setup: the agent's writable layer is not a directory")
	}
	s.upper = os.NewFile(uintptr(fds[0]), "upper")
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimRight(b.buf, "\n"))
}
