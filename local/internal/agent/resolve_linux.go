//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// Paths from outside the sandbox (file operations, a command's working
// directory, a program named by path) are resolved by the agent, which
// holds more than sandboxed code does: capabilities in the sandbox's user
// namespace and, for a moment at its start, whatever descriptors it
// inherited. So every such path is resolved with openat2 inside the
// sandbox's root (RESOLVE_IN_ROOT: ".." and absolute symlinks stop at it)
// and without magic links (RESOLVE_NO_MAGICLINKS: /proc/self/fd/N,
// /proc/1/root, /proc/PID/cwd and the like are refused, whoever planted
// them). What the operation then does, it does through the descriptor it
// resolved, never by the name again.

// resolveFlags are the openat2 resolve flags of every path from outside.
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// fsRoot resolves outside paths inside one root directory.
type fsRoot struct {
	fd int // O_PATH descriptor of the root
	// owner is who owns what the agent creates (-1: the agent itself).
	// Where sandboxed code runs under another uid than the agent, files
	// the agent creates for it must be its own.
	owner int
	group int // the group of what the agent creates, with owner
}

// openRoot opens dir as the root that paths are resolved in.
func openRoot(dir string, owner int) (*fsRoot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &fsRoot{fd: fd, owner: owner, group: owner}, nil
}

// open resolves name (absolute, or relative to the root) and opens it.
func (r *fsRoot) open(name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveFlags}
	var fd int
	var err error
	// openat2 answers EAGAIN when a rename raced the resolution of "..":
	// try again, a bounded number of times.
	for range 64 {
		fd, err = unix.Openat2(r.fd, name, &how)
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if err := refuseProcessEntry(fd, name); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// isProcessEntry reports whether p is in the per-process part of /proc:
// /proc/self, /proc/thread-self, /proc/PID or anything under them.
func isProcessEntry(p string) bool {
	rest, ok := strings.CutPrefix(p, "/proc/")
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(rest, "/")
	if name == "self" || name == "thread-self" {
		return true
	}
	for _, c := range []byte(name) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return name != ""
}

// refuseProcessEntry refuses a descriptor that names a process's entries
// in /proc. Opened by the agent, they would describe the agent (its
// executable, its memory map, its descriptors), not the sandbox's code;
// sandboxed code can read its own with a command.
func refuseProcessEntry(fd int, name string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.PROC_SUPER_MAGIC {
		return nil
	}
	real, err := fdPath(fd)
	if err != nil || isProcessEntry(real) {
		return &fs.PathError{Op: "open", Path: name, Err: errProcessEntry}
	}
	return nil
}

var errProcessEntry = errors.New("process entries of /proc are not served by the file API (they would describe the sandbox's agent); read them with a command")

// fdPath returns the path an open descriptor names, as the kernel sees it
// from the agent's root: no symlinks, no "..".
func fdPath(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// resolveDir resolves a directory and returns its canonical path (no
// symlinks, no magic links), for a working directory. A descriptor would
// be safer still, but a command's directory is changed to by name after
// fork; the name returned here leads to the same directory unless the
// sandbox's own code renames things meanwhile, and then it can only lead
// somewhere else inside the sandbox.
func (r *fsRoot) resolveDir(name string) (string, error) {
	fd, err := r.open(name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return fdPath(fd)
}

// openRegular opens a regular file for reading. It never blocks: a FIFO
// or device is opened non-blocking, seen for what it is and refused.
func (r *fsRoot) openRegular(name string) (*os.File, int64, error) {
	fd, err := r.open(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		unix.Close(fd)
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: unix.EISDIR}
	default:
		unix.Close(fd)
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
	}
	// Reads of a regular file do not block; clearing O_NONBLOCK keeps the
	// descriptor an ordinary one for the Go runtime.
	unix.SetNonblock(fd, false)
	return os.NewFile(uintptr(fd), name), st.Size, nil
}

var errNotRegular = errors.New("not a regular file (a FIFO, socket or device): the file API reads and writes regular files only")

// stat describes name, following symlinks; a dangling link, or one that
// leads to a magic link, is described as itself.
func (r *fsRoot) stat(name string) (agentproto.FileStat, error) {
	var st unix.Stat_t
	fd, err := r.open(name, unix.O_PATH, 0)
	if err == nil {
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return agentproto.FileStat{}, &fs.PathError{Op: "stat", Path: name, Err: err}
		}
	} else {
		if errors.Is(err, errProcessEntry) {
			return agentproto.FileStat{}, err
		}
		// The link itself, if there is one.
		dir, base := path.Split(name)
		if base == "" {
			return agentproto.FileStat{}, err
		}
		dfd, derr := r.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if derr != nil {
			return agentproto.FileStat{}, err
		}
		lerr := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(dfd)
		if lerr != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return agentproto.FileStat{}, err
		}
	}
	return agentproto.FileStat{
		Name:    path.Base(name),
		Path:    name,
		Dir:     st.Mode&unix.S_IFMT == unix.S_IFDIR,
		Size:    st.Size,
		Mode:    st.Mode & 0o777,
		ModTime: st.Mtim.Nano(),
	}, nil
}

// readDir lists a directory, each entry described as stat describes it.
func (r *fsRoot) readDir(name string) ([]agentproto.FileStat, error) {
	fd, err := r.open(name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	out := make([]agentproto.FileStat, 0, len(names))
	for _, n := range names {
		st, err := r.stat(path.Join(name, n))
		if err != nil {
			continue // vanished meanwhile
		}
		out = append(out, st)
	}
	return out, nil
}

// chown gives what the agent created to the sandbox's code.
func (r *fsRoot) chown(dirfd int, name string) error {
	if r.owner < 0 {
		return nil
	}
	return unix.Fchownat(dirfd, name, r.owner, r.group, unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH)
}

// mkdirAll makes a directory and its missing parents (0755).
func (r *fsRoot) mkdirAll(name string) error {
	name = path.Clean("/" + name)
	parent, err := unix.Dup(r.fd)
	if err != nil {
		return err
	}
	defer func() { unix.Close(parent) }()
	if name == "/" {
		return nil
	}
	comps := strings.Split(name[1:], "/")
	for i, c := range comps {
		prefix := "/" + strings.Join(comps[:i+1], "/")
		fd, err := r.open(prefix, unix.O_PATH|unix.O_DIRECTORY, 0)
		if errors.Is(err, unix.ENOENT) {
			if merr := unix.Mkdirat(parent, c, 0o755); merr != nil && merr != unix.EEXIST {
				return &fs.PathError{Op: "mkdir", Path: prefix, Err: merr}
			} else if merr == nil {
				if err := r.chown(parent, c); err != nil {
					return &fs.PathError{Op: "mkdir", Path: prefix, Err: err}
				}
			}
			fd, err = r.open(prefix, unix.O_PATH|unix.O_DIRECTORY, 0)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return &fs.PathError{Op: "mkdir", Path: name, Err: unix.EEXIST}
		}
		if err != nil {
			return err
		}
		unix.Close(parent)
		parent = fd
	}
	return nil
}

// removeAll removes name and, if it is a directory, everything in it. A
// missing name is not an error; the root is refused.
func (r *fsRoot) removeAll(name string) error {
	name = path.Clean("/" + name)
	if name == "/" {
		return &fs.PathError{Op: "remove", Path: name, Err: unix.EBUSY}
	}
	dir, base := path.Split(name)
	dfd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := removeAt(dfd, base, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// removeAt removes name in the directory dirfd, recursively, never
// following a symlink (a link is removed, not what it points to).
func removeAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	if depth > 4096 {
		return unix.ELOOP
	}
	fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		if oerr == unix.ENOTDIR {
			return err // not a directory: the unlink's reason stands
		}
		return oerr
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAt(fd, n, depth+1); err != nil {
				f.Close()
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// createTemp creates an empty temporary file in the directory dirfd. Its
// name has a fixed length, so any valid final name (up to 255 bytes) fits
// beside it.
func (r *fsRoot) createTemp(dirfd int) (*os.File, string, error) {
	for range 16 {
		var b [8]byte
		if _, err := unix.Getrandom(b[:], 0); err != nil {
			return nil, "", err
		}
		name := fmt.Sprintf(".compute-%x.tmp", b[:])
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if r.owner >= 0 {
			if err := unix.Fchown(fd, r.owner, r.group); err != nil {
				unix.Close(fd)
				unix.Unlinkat(dirfd, name, 0)
				return nil, "", err
			}
		}
		return os.NewFile(uintptr(fd), name), name, nil
	}
	return nil, "", unix.EEXIST
}
