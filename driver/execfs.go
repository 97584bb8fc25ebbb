package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ExecFileSystem is the filesystem package compute uses for providers
// without a native one: every operation is one command in the sandbox
// (sh, cat, mkdir, mv, rm and GNU find), with paths passed as arguments,
// never spliced into scripts, and contents moved over the command's
// stdin/stdout, so any bytes survive. Open reads the whole file before
// returning.
func ExecFileSystem(sb Sandbox) FileSystem { return execFS{sb} }

type execFS struct{ sb Sandbox }

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
	p, err := e.sb.Start(ctx, &ExecRequest{Argv: []string{"/bin/sh", "-c", script, "sh", name}, Stdin: stdin, Stdout: &out, Stderr: &errb})
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

func sortInfos(list []FileInfo) {
	slices.SortFunc(list, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
}

// parseFind parses the working directory and then records of find's
// -printf '%y\t%s\t%T@\t%m\t%p\0'.
func parseFind(out []byte) ([]FileInfo, error) {
	wd, out, ok := bytes.Cut(out, []byte{0})
	if !ok || !path.IsAbs(string(wd)) {
		return nil, fmt.Errorf("unexpected listing output %q", out)
	}
	var list []FileInfo
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		f := strings.SplitN(string(rec), "\t", 5)
		if len(f) != 5 {
			return nil, fmt.Errorf("unexpected listing record %q", rec)
		}
		size, err1 := strconv.ParseInt(f[1], 10, 64)
		secs, err2 := strconv.ParseFloat(f[2], 64)
		mode, err3 := strconv.ParseUint(f[3], 8, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("unexpected listing record %q: %w", rec, err)
		}
		whole, frac := math.Modf(secs)
		full := f[4]
		if !path.IsAbs(full) {
			full = path.Join(string(wd), full)
		}
		list = append(list, FileInfo{
			Name:    path.Base(full),
			Path:    full,
			IsDir:   f[0] == "d",
			Size:    size,
			Mode:    uint32(mode),
			ModTime: time.Unix(int64(whole), int64(frac*1e9)),
		})
	}
	return list, nil
}
