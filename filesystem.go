package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// FileSystem is a sandbox's files, seen from the host. Paths are the
// sandbox's own: absolute, or relative to its working directory. Contents
// are bytes, moved exactly (binary-safe). Errors are *fs.PathError values
// wrapping fs.ErrNotExist, fs.ErrExist or fs.ErrPermission where they apply.
type FileSystem struct {
	p driver.FileSystem
}

// FileSystem returns the sandbox's filesystem: the provider's native one
// where it has one, otherwise a correct one built on commands (cat, find,
// mkdir, rm; see ExecFileSystem).
func (s *Sandbox) FileSystem() *FileSystem {
	if s.fsys != nil {
		return &FileSystem{p: s.fsys}
	}
	return &FileSystem{p: driver.ExecFileSystem(s.ps)}
}

func checkPath(op, name string) error {
	if name == "" {
		return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("empty path: %w", ErrInvalid)}
	}
	if strings.ContainsRune(name, 0) {
		return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("path contains a NUL byte: %w", ErrInvalid)}
	}
	return nil
}

// ReadFile returns the whole content of a file.
func (f *FileSystem) ReadFile(ctx context.Context, name string) ([]byte, error) {
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
func (f *FileSystem) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkPath("open", name); err != nil {
		return nil, err
	}
	return f.p.Open(ctx, name)
}

// WriteFile writes data to a file, creating it and its parent directories,
// replacing what was there.
func (f *FileSystem) WriteFile(ctx context.Context, name string, data []byte) error {
	return f.Write(ctx, name, bytes.NewReader(data))
}

// Write streams r into a file, creating it and its parent directories. A
// write that fails part way leaves the previous content in place.
func (f *FileSystem) Write(ctx context.Context, name string, r io.Reader) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	return f.p.WriteFile(ctx, name, r)
}

// MkdirAll creates a directory and any missing parents. An existing
// directory is not an error.
func (f *FileSystem) MkdirAll(ctx context.Context, name string) error {
	if err := checkPath("mkdir", name); err != nil {
		return err
	}
	return f.p.MkdirAll(ctx, name)
}

// ReadDir lists a directory, sorted by name, without "." and "..".
func (f *FileSystem) ReadDir(ctx context.Context, name string) ([]FileInfo, error) {
	if err := checkPath("readdir", name); err != nil {
		return nil, err
	}
	return f.p.ReadDir(ctx, name)
}

// Stat describes a file or directory.
func (f *FileSystem) Stat(ctx context.Context, name string) (*FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return nil, err
	}
	return f.p.Stat(ctx, name)
}

// Exists reports whether a path exists. Errors other than "does not
// exist" are returned.
func (f *FileSystem) Exists(ctx context.Context, name string) (bool, error) {
	_, err := f.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// RemoveAll removes a file or a directory with everything in it. Removing a
// missing path is not an error.
func (f *FileSystem) RemoveAll(ctx context.Context, name string) error {
	if err := checkPath("remove", name); err != nil {
		return err
	}
	if strings.Trim(name, "/") == "" {
		return &fs.PathError{Op: "remove", Path: name, Err: fmt.Errorf("refusing to remove the root directory: %w", ErrInvalid)}
	}
	return f.p.RemoveAll(ctx, name)
}
