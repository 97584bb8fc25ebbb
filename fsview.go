package compute

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path"
)

// FS returns an io/fs view of the sandbox's files under root (an absolute
// path, or relative to the working directory), so fs.WalkDir, fs.ReadFile,
// fs.Glob, template.ParseFS and http.FS work over a sandbox. Every call
// made through it uses ctx.
func (f *FileSystem) FS(ctx context.Context, root string) fs.FS {
	if root == "" {
		root = "."
	}
	return &sandboxFS{ctx: ctx, f: f, root: root}
}

type sandboxFS struct {
	ctx  context.Context
	f    *FileSystem
	root string
}

var (
	_ fs.ReadFileFS = (*sandboxFS)(nil)
	_ fs.ReadDirFS  = (*sandboxFS)(nil)
	_ fs.StatFS     = (*sandboxFS)(nil)
)

func (s *sandboxFS) full(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return path.Join(s.root, name), nil
}

// rename restates an error from the sandbox path in terms of the fs.FS name.
func rename(err error, op, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (s *sandboxFS) Stat(name string) (fs.FileInfo, error) {
	full, err := s.full("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := s.f.Stat(s.ctx, full)
	if err != nil {
		return nil, rename(err, "stat", name)
	}
	fi.Name = path.Base(name)
	return fi.Info(), nil
}

func (s *sandboxFS) ReadFile(name string) ([]byte, error) {
	full, err := s.full("readfile", name)
	if err != nil {
		return nil, err
	}
	data, err := s.f.ReadFile(s.ctx, full)
	if err != nil {
		return nil, rename(err, "readfile", name)
	}
	return data, nil
}

func (s *sandboxFS) ReadDir(name string) ([]fs.DirEntry, error) {
	full, err := s.full("readdir", name)
	if err != nil {
		return nil, err
	}
	list, err := s.f.ReadDir(s.ctx, full)
	if err != nil {
		return nil, rename(err, "readdir", name)
	}
	out := make([]fs.DirEntry, len(list))
	for i, fi := range list {
		out[i] = fs.FileInfoToDirEntry(fi.Info())
	}
	return out, nil
}

func (s *sandboxFS) Open(name string) (fs.File, error) {
	info, err := s.Stat(name)
	if err != nil {
		return nil, rename(err, "open", name)
	}
	return &sandboxFile{fsys: s, name: name, info: info}, nil
}

// sandboxFile is an open fs.File. A regular file's content is fetched on
// the first Read; a directory's listing on the first ReadDir.
type sandboxFile struct {
	fsys *sandboxFS
	name string
	info fs.FileInfo

	r       io.ReadCloser
	entries []fs.DirEntry
	listed  bool
	closed  bool
}

func (f *sandboxFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *sandboxFile) Read(b []byte) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	if f.info.IsDir() {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("is a directory")}
	}
	if f.r == nil {
		full, _ := f.fsys.full("read", f.name)
		r, err := f.fsys.f.Open(f.fsys.ctx, full)
		if err != nil {
			return 0, rename(err, "read", f.name)
		}
		f.r = r
	}
	return f.r.Read(b)
}

func (f *sandboxFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !f.info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: errors.New("not a directory")}
	}
	if !f.listed {
		list, err := f.fsys.ReadDir(f.name)
		if err != nil {
			return nil, err
		}
		f.entries, f.listed = list, true
	}
	if n <= 0 {
		out := f.entries
		f.entries = nil
		return out, nil
	}
	if len(f.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(f.entries))
	out := f.entries[:n]
	f.entries = f.entries[n:]
	return out, nil
}

func (f *sandboxFile) Close() error {
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	if f.r != nil {
		return f.r.Close()
	}
	return nil
}
