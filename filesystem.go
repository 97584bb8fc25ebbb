package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Filesystem is a sandbox's files, seen from the host. Paths are the
// sandbox's own: absolute, or relative to its working directory. Contents
// are bytes, moved exactly (binary-safe). Errors are *fs.PathError values
// wrapping fs.ErrNotExist, fs.ErrExist or fs.ErrPermission where they apply.
type Filesystem struct {
	p ProviderFileSystem
}

// Filesystem returns the sandbox's filesystem: the provider's native one
// where it has one, otherwise a correct one built on commands (cat, find,
// mkdir, rm; see ExecFileSystem).
func (s *Sandbox) Filesystem() *Filesystem {
	if s.fsys != nil {
		return &Filesystem{p: s.fsys}
	}
	return &Filesystem{p: ExecFileSystem(s.ps)}
}

func checkPath(op, name string) error {
	if name == "" {
		return &fs.PathError{Op: op, Path: name, Err: errors.New("empty path")}
	}
	if strings.ContainsRune(name, 0) {
		return &fs.PathError{Op: op, Path: name, Err: errors.New("path contains a NUL byte")}
	}
	return nil
}

// ReadFile returns the whole content of a file.
func (f *Filesystem) ReadFile(ctx context.Context, name string) ([]byte, error) {
	r, err := f.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	if sz, ok := r.(interface{ Size() int64 }); ok && sz.Size() > 0 && sz.Size() < 1<<34 {
		buf.Grow(int(sz.Size()) + 1) // +1: ReadFrom wants room to see EOF
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return buf.Bytes(), nil
}

// Open opens a regular file for streaming reads.
func (f *Filesystem) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkPath("open", name); err != nil {
		return nil, err
	}
	return f.p.Open(ctx, name)
}

// WriteFile writes data to a file, creating it and its parent directories,
// replacing what was there.
func (f *Filesystem) WriteFile(ctx context.Context, name string, data []byte) error {
	return f.Write(ctx, name, bytes.NewReader(data))
}

// Write streams r into a file, creating it and its parent directories. A
// write that fails part way leaves the previous content in place.
func (f *Filesystem) Write(ctx context.Context, name string, r io.Reader) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	return f.p.WriteFile(ctx, name, r)
}

// Mkdir creates a directory and any missing parents. An existing
// directory is not an error.
func (f *Filesystem) Mkdir(ctx context.Context, name string) error {
	if err := checkPath("mkdir", name); err != nil {
		return err
	}
	return f.p.MkdirAll(ctx, name)
}

// ReadDir lists a directory, sorted by name, without "." and "..".
func (f *Filesystem) ReadDir(ctx context.Context, name string) ([]FileInfo, error) {
	if err := checkPath("readdir", name); err != nil {
		return nil, err
	}
	return f.p.ReadDir(ctx, name)
}

// Stat describes a file or directory.
func (f *Filesystem) Stat(ctx context.Context, name string) (*FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return nil, err
	}
	return f.p.Stat(ctx, name)
}

// Exists reports whether a path exists. Errors other than "does not
// exist" are returned.
func (f *Filesystem) Exists(ctx context.Context, name string) (bool, error) {
	_, err := f.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Remove removes a file or a directory with everything in it. Removing a
// missing path is not an error.
func (f *Filesystem) Remove(ctx context.Context, name string) error {
	if err := checkPath("remove", name); err != nil {
		return err
	}
	if strings.Trim(name, "/") == "" {
		return &fs.PathError{Op: "remove", Path: name, Err: errors.New("refusing to remove the root directory")}
	}
	return f.p.RemoveAll(ctx, name)
}

// ExecFileSystem is the filesystem package compute uses for providers
// without a native one: every operation is one command in the sandbox
// (sh, cat, mkdir, mv, rm and GNU find), with paths passed as arguments,
// never spliced into scripts, and contents moved over the command's
// stdin/stdout, so any bytes survive. Open reads the whole file before
// returning.
func ExecFileSystem(ps ProviderSandbox) ProviderFileSystem { return execFS{ps} }

type execFS struct{ ps ProviderSandbox }

// Exit codes of the scripts below.
const (
	fsExitNotExist = 20
	fsExitExist    = 21
	fsExitNotDir   = 22
	fsExitNotFile  = 23
)

const (
	scriptOpen  = `[ -e "$1" ] || exit 20; [ -f "$1" ] || exit 23; exec cat -- "$1"`
	scriptWrite = `d=$(dirname -- "$1") && mkdir -p -- "$d" && [ ! -d "$1" ] || exit 21; t="$1.tmp-$$" && cat > "$t" && mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 1; }`
	scriptMkdir = `[ ! -e "$1" ] || [ -d "$1" ] || exit 21; exec mkdir -p -- "$1"`
	// The listings start with the working directory, to make paths absolute.
	scriptList = `[ -e "$1" ] || exit 20; [ -d "$1" ] || exit 22; printf '%s\0' "$PWD"; exec find -L "$1" -mindepth 1 -maxdepth 1 -printf '%y\t%s\t%T@\t%m\t%p\0'`
	scriptStat = `[ -e "$1" ] || exit 20; printf '%s\0' "$PWD"; exec find -L "$1" -maxdepth 0 -printf '%y\t%s\t%T@\t%m\t%p\0'`
	scriptRm   = `exec rm -rf -- "$1"`
)

// run runs a script with the path as $1 and returns stdout or an error
// mapped from the script's exit code.
func (e execFS) run(ctx context.Context, op, script, name string, stdin io.Reader) ([]byte, error) {
	if strings.HasPrefix(name, "-") {
		name = "./" + name // so no tool reads it as an option
	}
	var out, errb bytes.Buffer
	p, err := e.ps.Start(ctx, &ExecRequest{Argv: []string{"/bin/sh", "-c", script, "sh", name}, Stdin: stdin, Stdout: &out, Stderr: &errb})
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	stop := context.AfterFunc(ctx, func() { p.Kill() })
	code, err := p.Wait()
	stop()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	switch code {
	case 0:
		return out.Bytes(), nil
	case fsExitNotExist:
		err = fs.ErrNotExist
	case fsExitExist:
		err = fs.ErrExist
	case fsExitNotDir:
		err = errors.New("not a directory")
	case fsExitNotFile:
		err = errors.New("not a regular file")
	default:
		msg := strings.TrimSpace(errb.String())
		if strings.Contains(msg, "Permission denied") {
			err = fmt.Errorf("%s: %w", msg, fs.ErrPermission)
		} else {
			err = fmt.Errorf("exit status %d: %s", code, msg)
		}
	}
	return nil, &fs.PathError{Op: op, Path: name, Err: err}
}

func (e execFS) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	out, err := e.run(ctx, "open", scriptOpen, name, nil)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}

func (e execFS) WriteFile(ctx context.Context, name string, r io.Reader) error {
	_, err := e.run(ctx, "write", scriptWrite, name, r)
	return err
}

func (e execFS) MkdirAll(ctx context.Context, name string) error {
	_, err := e.run(ctx, "mkdir", scriptMkdir, name, nil)
	return err
}

func (e execFS) RemoveAll(ctx context.Context, name string) error {
	_, err := e.run(ctx, "remove", scriptRm, name, nil)
	return err
}

func (e execFS) ReadDir(ctx context.Context, name string) ([]FileInfo, error) {
	out, err := e.run(ctx, "readdir", scriptList, name, nil)
	if err != nil {
		return nil, err
	}
	list, err := parseFind(out)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	sortInfos(list)
	return list, nil
}

func (e execFS) Stat(ctx context.Context, name string) (*FileInfo, error) {
	out, err := e.run(ctx, "stat", scriptStat, name, nil)
	if err != nil {
		return nil, err
	}
	list, err := parseFind(out)
	if err == nil && len(list) != 1 {
		err = fmt.Errorf("unexpected stat output %q", out)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return &list[0], nil
}
