//go:build linux

package local

// The file system client: file operations done by the agent, inside the
// sandbox, with file contents streamed through pipes.

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// FileSystem returns the sandbox's native file access.
func (s *sandbox) FileSystem() driver.FileSystem { return (*sandboxFS)(s) }

type sandboxFS sandbox

func (f *sandboxFS) s() *sandbox { return (*sandbox)(f) }

// pathErr rebuilds an agent's error as an *fs.PathError; errno values keep
// errors.Is(err, fs.ErrNotExist) and friends working.
func pathErr(op, name string, rep *agentproto.Reply) error {
	if rep.Errno != 0 {
		return &fs.PathError{Op: op, Path: name, Err: syscall.Errno(rep.Errno)}
	}
	return &fs.PathError{Op: op, Path: name, Err: errors.New(rep.Err)}
}

func (f *sandboxFS) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r, w, err := bigPipe()
	if err != nil {
		return nil, err
	}
	o, err := f.s().begin(ctx, &agentproto.Request{Op: agentproto.OpOpen, Path: name}, w)
	if err != nil {
		r.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	rep, err := o.answer(ctx)
	if err == nil && rep.Err != "" {
		err = pathErr("open", name, rep)
	} else if err != nil {
		err = &fs.PathError{Op: "open", Path: name, Err: f.s().lost(err)}
	}
	if err != nil {
		o.conn.Close()
		r.Close()
		return nil, err
	}
	fr := &fileReader{r: r, op: o, name: name, ctx: ctx, size: -1}
	if len(rep.Files) == 1 {
		fr.size = rep.Files[0].Size
	}
	return fr, nil
}

// fileReader reads a file streamed through a pipe, and at the end checks
// the agent's verdict so a failed read is never mistaken for a short file.
type fileReader struct {
	r    *os.File
	op   *op
	name string
	ctx  context.Context
	err  error
	size int64 // as the agent saw it when opening; -1 if unknown
}

// Size is the file's size when it was opened, so readers can size their
// buffers (compute's ReadFile does).
func (fr *fileReader) Size() int64 { return fr.size }

func (fr *fileReader) Read(b []byte) (int, error) {
	if fr.err != nil {
		return 0, fr.err
	}
	n, err := fr.r.Read(b)
	if err == io.EOF {
		rep, rerr := fr.op.reply(fr.ctx)
		switch {
		case rerr != nil:
			fr.err = &fs.PathError{Op: "read", Path: fr.name, Err: rerr}
		case rep.Err != "":
			fr.err = pathErr("read", fr.name, rep)
		default:
			fr.err = io.EOF
		}
		return n, fr.err
	}
	if err != nil {
		fr.err = err
	}
	return n, err
}

func (fr *fileReader) Close() error {
	fr.op.conn.Close()
	return fr.r.Close()
}

func (f *sandboxFS) WriteFile(ctx context.Context, name string, src io.Reader) error {
	r, w, err := bigPipe()
	if err != nil {
		return err
	}
	defer w.Close()
	o, err := f.s().begin(ctx, &agentproto.Request{Op: agentproto.OpWrite, Path: name}, r)
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	defer o.conn.Close()
	rep, err := o.answer(ctx)
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: f.s().lost(err)}
	}
	if rep.Err != "" {
		return pathErr("write", name, rep)
	}
	stop := context.AfterFunc(ctx, func() { w.SetWriteDeadline(time.Now()) })
	_, copyErr := io.Copy(w, src)
	stop()
	w.Close()
	if copyErr != nil && ctx.Err() != nil {
		copyErr = ctx.Err()
	}
	// On a failed copy the agent discards the temporary file.
	if err := agentproto.WriteMsg(o.conn, agentproto.Control{Commit: copyErr == nil}); err != nil && copyErr == nil {
		copyErr = err
	}
	rep, err = o.answer(ctx)
	switch {
	case err == nil && rep.Err != "" && (copyErr == nil || errors.Is(copyErr, syscall.EPIPE)):
		// The agent's reason (say, ENOSPC) beats our broken pipe.
		return pathErr("write", name, rep)
	case copyErr != nil:
		return &fs.PathError{Op: "write", Path: name, Err: copyErr}
	case err != nil:
		return &fs.PathError{Op: "write", Path: name, Err: f.s().lost(err)}
	}
	return nil
}

func (f *sandboxFS) simple(ctx context.Context, opName, name string, req *agentproto.Request) (*agentproto.Reply, error) {
	rep, err := f.s().call(ctx, req)
	if err != nil {
		return nil, &fs.PathError{Op: opName, Path: name, Err: err}
	}
	if rep.Err != "" {
		return nil, pathErr(opName, name, rep)
	}
	return rep, nil
}

func (f *sandboxFS) MkdirAll(ctx context.Context, name string) error {
	_, err := f.simple(ctx, "mkdir", name, &agentproto.Request{Op: agentproto.OpMkdir, Path: name})
	return err
}

func (f *sandboxFS) RemoveAll(ctx context.Context, name string) error {
	_, err := f.simple(ctx, "remove", name, &agentproto.Request{Op: agentproto.OpRemove, Path: name})
	return err
}

func toInfo(st agentproto.FileStat) driver.FileInfo {
	return driver.FileInfo{
		Name: st.Name, Path: st.Path, IsDir: st.Dir, Size: st.Size, Mode: st.Mode,
		ModTime: time.Unix(0, st.ModTime),
	}
}

func (f *sandboxFS) ReadDir(ctx context.Context, name string) ([]driver.FileInfo, error) {
	rep, err := f.simple(ctx, "readdir", name, &agentproto.Request{Op: agentproto.OpReadDir, Path: name})
	if err != nil {
		return nil, err
	}
	out := make([]driver.FileInfo, 0, len(rep.Files))
	for _, st := range rep.Files {
		if st.Name == "." || st.Name == ".." || st.Name == "" {
			continue
		}
		out = append(out, toInfo(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *sandboxFS) Stat(ctx context.Context, name string) (*driver.FileInfo, error) {
	rep, err := f.simple(ctx, "stat", name, &agentproto.Request{Op: agentproto.OpStat, Path: name})
	if err != nil {
		return nil, err
	}
	if len(rep.Files) != 1 {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: errors.New("malformed reply from sandbox")}
	}
	fi := toInfo(rep.Files[0])
	return &fi, nil
}

// bigPipe is a pipe with a 1 MiB buffer where the kernel allows it (the
// default is 64 KiB), for moving files: fewer trips between the two ends.
func bigPipe() (r, w *os.File, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, err
	}
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	return r, w, nil
}
