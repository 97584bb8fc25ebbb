package remote

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/url"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

// FileSystem returns the sandbox's files on the server: contents move as
// raw bytes, streamed both ways (GET and PUT .../files), the rest as JSON
// calls. Errors are *fs.PathError values that match fs.ErrNotExist,
// fs.ErrExist and fs.ErrPermission where they apply, and
// driver.ErrNotFound when the sandbox is gone.
func (s *Sandbox) FileSystem() driver.FileSystem { return fileSystem{s} }

type fileSystem struct{ s *Sandbox }

func pathQuery(name string) url.Values { return url.Values{"path": {name}} }

func pathErr(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (f fileSystem) call(ctx context.Context, op, method, endpoint, name string, out any) error {
	if err := f.s.p.call(ctx, method, sandboxPath(f.s.id)+endpoint, pathQuery(name), nil, out); err != nil {
		return pathErr(op, name, err)
	}
	return nil
}

// Open streams a file's content from the server.
func (f fileSystem) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	req, err := f.s.p.request(ctx, http.MethodGet, sandboxPath(f.s.id)+"/files", pathQuery(name), nil)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	resp, err := f.s.p.do(req)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	return &download{body: resp.Body, name: name}, nil
}

// download is a file's content as it arrives; a transfer cut short is an
// error, never a short file.
type download struct {
	body io.ReadCloser
	name string
}

func (d *download) Read(b []byte) (int, error) {
	n, err := d.body.Read(b)
	if err != nil && err != io.EOF {
		err = pathErr("read", d.name, err)
	}
	return n, err
}

func (d *download) Close() error { return d.body.Close() }

// WriteFile streams r to the server, which replaces the file only once
// all of it arrived.
func (f fileSystem) WriteFile(ctx context.Context, name string, r io.Reader) error {
	body := r
	switch r.(type) {
	case interface{ Len() int }:
		// bytes.Reader, strings.Reader, bytes.Buffer: NewRequest sends
		// their length, so the server can refuse an oversized file at once.
	default:
		body = io.NopCloser(r) // streamed, chunked
	}
	req, err := f.s.p.request(ctx, http.MethodPut, sandboxPath(f.s.id)+"/files", pathQuery(name), body)
	if err != nil {
		return pathErr("write", name, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.s.p.do(req)
	if err != nil {
		return pathErr("write", name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

func (f fileSystem) MkdirAll(ctx context.Context, name string) error {
	return f.call(ctx, "mkdir", http.MethodPost, "/dir", name, nil)
}

func (f fileSystem) RemoveAll(ctx context.Context, name string) error {
	return f.call(ctx, "remove", http.MethodDelete, "/files", name, nil)
}

func (f fileSystem) ReadDir(ctx context.Context, name string) ([]driver.FileInfo, error) {
	var list wire.DirList
	if err := f.call(ctx, "readdir", http.MethodGet, "/dir", name, &list); err != nil {
		return nil, err
	}
	out := make([]driver.FileInfo, len(list.Files))
	for i, fi := range list.Files {
		out[i] = fileInfo(fi)
	}
	return out, nil
}

func (f fileSystem) Stat(ctx context.Context, name string) (*driver.FileInfo, error) {
	var fi wire.FileInfo
	if err := f.call(ctx, "stat", http.MethodGet, "/stat", name, &fi); err != nil {
		return nil, err
	}
	info := fileInfo(fi)
	return &info, nil
}

func fileInfo(fi wire.FileInfo) driver.FileInfo {
	return driver.FileInfo{Name: fi.Name, Path: fi.Path, IsDir: fi.IsDir, Size: fi.Size, Mode: fi.Mode, ModTime: fi.ModTime}
}
