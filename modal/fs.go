package modal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

// FileSystem returns the sandbox's files through Modal's filesystem API
// (the SDK's Sandbox.Filesystem): one exec of Modal's file tool per
// operation, contents moved as bytes, exactly.
func (s *Sandbox) FileSystem() driver.FileSystem { return &filesystem{s: s} }

type filesystem struct{ s *Sandbox }

// memLimit is the size up to which WriteFile sends a file from memory;
// larger ones are spooled to a local temporary file and streamed from it.
const memLimit = 8 << 20

// maxSymlinks bounds the links Stat follows.
const maxSymlinks = 40

func (f *filesystem) fsys() *modalsdk.SandboxFilesystem { return f.s.sb.Filesystem }

// fsProbeAfter is how long a filesystem operation may run before the
// provider starts checking, every probeInterval, that Modal still runs
// commands in the sandbox (see filesystem.do).
const fsProbeAfter = 30 * time.Second

// do runs one SDK filesystem call so that it honours ctx, and so that it
// ends with an error that says so when Modal stops answering.
//
// The SDK runs Modal's file tool as an exec, waits for its exit status on
// ctx (retrying failed calls until ctx ends), then reads its output on a
// context of its own. So when ctx ends first, do returns ctx's error at
// once and leaves the call to end by itself: it sees ctx's end too, except
// in that read, which ends when Modal answers or the connection closes.
// And while the call lasts past fsProbeAfter, a small exec checks every
// probeInterval that Modal runs a command and reports its exit within
// probeTimeout (ping); when it does not, the call is cancelled and do
// returns an error saying Modal stopped answering.
func (f *filesystem) do(ctx context.Context, fn func(context.Context) error) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- fn(cctx) }()
	t := time.NewTimer(fsProbeAfter)
	defer t.Stop()
	for {
		select {
		case err := <-res:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		err := f.s.ping(cctx)
		switch {
		case err == nil:
			t.Reset(probeInterval)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select {
		case err := <-res:
			return err // it ended meanwhile: its own outcome says more
		default:
		}
		if isGone(err) {
			return err
		}
		return &Error{Op: "exec", Sandbox: f.s.id, Msg: "Modal stopped answering: a filesystem operation has not ended, and checking that Modal still runs commands in the sandbox failed", Err: err}
	}
}

// abs makes name absolute against the sandbox's working directory.
func (f *filesystem) abs(ctx context.Context, op, name string) (string, error) {
	if why := f.s.goneReason(); why != "" {
		return "", &fs.PathError{Op: op, Path: name, Err: stoppedError(op, f.s.id, why, nil)}
	}
	if path.IsAbs(name) {
		return path.Clean(name), nil
	}
	wd, err := f.s.workDir(ctx)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	return path.Join(wd, name), nil
}

// pathErr maps an SDK filesystem error to a *fs.PathError wrapping the
// io/fs error of its kind.
func (f *filesystem) pathErr(ctx context.Context, op, name string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return &fs.PathError{Op: op, Path: name, Err: ctxErr(ctx, err)}
	}
	var (
		nf   modalsdk.SandboxFilesystemNotFoundError
		nd   modalsdk.SandboxFilesystemNotADirectoryError
		isd  modalsdk.SandboxFilesystemIsADirectoryError
		perm modalsdk.SandboxFilesystemPermissionError
		ae   modalsdk.SandboxFilesystemPathAlreadyExistsError
		ne   modalsdk.SandboxFilesystemDirectoryNotEmptyError
		big  modalsdk.SandboxFilesystemFileTooLargeError
		pe   *os.PathError
	)
	var kind error
	switch {
	case errors.As(err, &nf):
		kind = fs.ErrNotExist
	case errors.As(err, &nd):
		kind = syscall.ENOTDIR
	case errors.As(err, &isd):
		kind = syscall.EISDIR
	case errors.As(err, &perm):
		kind = fs.ErrPermission
	case errors.As(err, &ae):
		kind = fs.ErrExist
	case errors.As(err, &ne):
		kind = syscall.ENOTEMPTY
	case errors.As(err, &big):
		kind = syscall.EFBIG
	case errors.As(err, &pe):
		return err // a local file's error
	default:
		if why := f.s.goneReason(); why != "" {
			return &fs.PathError{Op: op, Path: name, Err: stoppedError(op, f.s.id, why, err)}
		}
		return &fs.PathError{Op: op, Path: name, Err: f.s.opErr(ctx, op, err)}
	}
	return &fs.PathError{Op: op, Path: name, Err: kind}
}

// Open reads a file. The SDK streams it into a local temporary file
// (removed at once: it lives until the reader is closed), so large files
// take no memory.
func (f *filesystem) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	p, err := f.abs(ctx, "open", name)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "computesdk-modal-")
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	local := filepath.Join(dir, "file")
	if err := f.do(ctx, func(ctx context.Context) error { return f.fsys().CopyToLocal(ctx, p, local, nil) }); err != nil {
		os.RemoveAll(dir)
		return nil, f.pathErr(ctx, "open", name, err)
	}
	file, err := os.Open(local)
	if err != nil {
		os.RemoveAll(dir)
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	// Where an open file can be removed (Unix), nothing is left behind
	// even if the reader is never closed; elsewhere Close removes it.
	os.RemoveAll(dir)
	return &tempFile{File: file, dir: dir}, nil
}

// tempFile is a downloaded file that is removed when closed.
type tempFile struct {
	*os.File
	dir string
}

func (t *tempFile) Close() error {
	err := t.File.Close()
	os.RemoveAll(t.dir)
	return err
}

// WriteFile writes r to a file, creating its parent directories. Up to
// 8 MiB go from memory; more is spooled to a local temporary file that the
// SDK streams (and resumes after a broken stream).
func (f *filesystem) WriteFile(ctx context.Context, name string, r io.Reader) error {
	p, err := f.abs(ctx, "write", name)
	if err != nil {
		return err
	}
	head, err := io.ReadAll(io.LimitReader(r, memLimit+1))
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	if len(head) <= memLimit {
		return f.pathErr(ctx, "write", name, f.do(ctx, func(ctx context.Context) error { return f.fsys().WriteBytes(ctx, head, p, nil) }))
	}
	tmp, err := os.CreateTemp("", "computesdk-modal-upload-")
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, io.MultiReader(bytes.NewReader(head), r)); err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	if err := tmp.Sync(); err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	return f.pathErr(ctx, "write", name, f.do(ctx, func(ctx context.Context) error { return f.fsys().CopyFromLocal(ctx, tmp.Name(), p, nil) }))
}

// MkdirAll creates a directory and its parents; an existing directory is
// not an error, an existing file is (fs.ErrExist).
func (f *filesystem) MkdirAll(ctx context.Context, name string) error {
	p, err := f.abs(ctx, "mkdir", name)
	if err != nil {
		return err
	}
	return f.pathErr(ctx, "mkdir", name, f.do(ctx, func(ctx context.Context) error { return f.fsys().MakeDirectory(ctx, p, nil) }))
}

// RemoveAll removes a file or a directory tree; a missing path is not an
// error.
func (f *filesystem) RemoveAll(ctx context.Context, name string) error {
	p, err := f.abs(ctx, "remove", name)
	if err != nil {
		return err
	}
	err = f.pathErr(ctx, "remove", name, f.do(ctx, func(ctx context.Context) error {
		return f.fsys().Remove(ctx, p, &modalsdk.SandboxFilesystemRemoveParams{Recursive: true})
	}))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ReadDir lists a directory, sorted by name; symbolic links are
// described by what they point to (one more call per link).
func (f *filesystem) ReadDir(ctx context.Context, name string) ([]driver.FileInfo, error) {
	p, err := f.abs(ctx, "readdir", name)
	if err != nil {
		return nil, err
	}
	var list []modalsdk.FileInfo
	err = f.do(ctx, func(ctx context.Context) (err error) {
		list, err = f.fsys().ListFiles(ctx, p, nil)
		return err
	})
	if err != nil {
		return nil, f.pathErr(ctx, "readdir", name, err)
	}
	out := make([]driver.FileInfo, 0, len(list))
	for _, e := range list {
		if e.Name == "." || e.Name == ".." {
			continue
		}
		full := path.Join(p, e.Name)
		fi := fileInfo(&e, e.Name, full)
		if e.Type == modalsdk.FileTypeSymlink {
			if target, err := f.follow(ctx, full); err == nil {
				fi = fileInfo(target, e.Name, full)
			}
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stat describes a file, following symbolic links.
func (f *filesystem) Stat(ctx context.Context, name string) (*driver.FileInfo, error) {
	p, err := f.abs(ctx, "stat", name)
	if err != nil {
		return nil, err
	}
	e, err := f.follow(ctx, p)
	if err != nil {
		return nil, f.pathErr(ctx, "stat", name, err)
	}
	fi := fileInfo(e, path.Base(p), p)
	return &fi, nil
}

// follow stats p and, while that is a symbolic link, what it points to.
func (f *filesystem) follow(ctx context.Context, p string) (*modalsdk.FileInfo, error) {
	for range maxSymlinks {
		var e *modalsdk.FileInfo
		err := f.do(ctx, func(ctx context.Context) (err error) {
			e, err = f.fsys().Stat(ctx, p, nil)
			return err
		})
		if err != nil {
			return nil, err
		}
		if e.Type != modalsdk.FileTypeSymlink || e.SymlinkTarget == nil {
			return e, nil
		}
		target := *e.SymlinkTarget
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return nil, syscall.ELOOP
}

func fileInfo(e *modalsdk.FileInfo, name, full string) driver.FileInfo {
	sec := int64(e.ModifiedTime)
	nsec := int64((e.ModifiedTime - float64(sec)) * 1e9)
	return driver.FileInfo{
		Name:    name,
		Path:    full,
		IsDir:   e.Type == modalsdk.FileTypeDirectory,
		Size:    e.Size,
		Mode:    e.Mode & 0o777,
		ModTime: time.Unix(sec, nsec),
	}
}
