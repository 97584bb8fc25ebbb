package imagestore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// maxCaptureDepth bounds the nesting of directories a build step's layer
// may have: a hostile step could nest them until copying runs out of
// descriptors.
const maxCaptureDepth = 256

// capturer copies an overlayfs upper directory (a build step's changes)
// into the store's form. The upper directory was written by sandboxed
// code: it is read entry by entry through descriptors, never following a
// link, never leaving it (O_NOFOLLOW on every component, names from the
// directory itself), and everything it holds is counted against the
// limits.
type capturer struct {
	ctx      context.Context
	lim      *limits
	uid, gid uint32 // the owner of the upper's root: the sandbox's root, on the host
	skip     map[string]bool
	u        unpacked
	dst      int                  // the layer root, as created
	links    map[[2]uint64]string // (dev, ino) of files with several links -> where the first went
}

// captureUpper copies upper into rootDir (which it creates) as a layer in
// the store's form: the files, directories, links and FIFOs, with their
// permission bits (setuid and setgid cleared) and times, owned by this
// process; whiteouts (0/0 character devices, or empty files marked
// user.overlay.whiteout) as empty files marked user.overlay.whiteout in
// a directory marked user.overlay.opaque="x"; opaque directories
// (user.overlay.opaque="y") marked so. Other extended attributes,
// devices and sockets are left out. Owners other than the upper root's
// are recorded relative to it (Layer.Owners).
func captureUpper(ctx context.Context, upper *os.File, rootDir string, skip []string, lim *limits) (*unpacked, error) {
	src, err := unix.Openat(int(upper.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the upper directory: %w", err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return nil, err
	}
	if err := os.Mkdir(rootDir, 0o700); err != nil {
		return nil, err
	}
	dst, err := unix.Open(rootDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dst)
	c := &capturer{ctx: ctx, lim: lim, uid: st.Uid, gid: st.Gid, skip: map[string]bool{}, dst: dst, links: map[[2]uint64]string{}}
	for _, p := range skip {
		c.skip[path.Clean(p)] = true
	}
	if err := c.dir(src, dst, "", 0); err != nil {
		return nil, err
	}
	// The layer root is the sandbox's "/": traversable by every user.
	if err := unix.Fchmod(dst, 0o755); err != nil {
		return nil, err
	}
	return &c.u, nil
}

func (c *capturer) note(format string, args ...any) {
	if len(c.u.notes) < 100 {
		c.u.notes = append(c.u.notes, fmt.Sprintf(format, args...))
	}
}

// dir copies the entries of the directory src into dst. rel is its path
// in the layer.
func (c *capturer) dir(src, dst int, rel string, depth int) error {
	if depth > maxCaptureDepth {
		return fmt.Errorf("%w: directories nested deeper than %d levels at %q", ErrTooLarge, maxCaptureDepth, rel)
	}
	if err := c.ctx.Err(); err != nil {
		return context.Cause(c.ctx)
	}
	d, err := unix.Dup(src)
	if err != nil {
		return err
	}
	df := os.NewFile(uintptr(d), rel)
	defer df.Close()
	whiteouts := false
	for {
		names, err := df.Readdirnames(1024)
		for _, name := range names {
			wo, err := c.entry(src, dst, name, path.Join(rel, name), depth)
			if err != nil {
				return err
			}
			whiteouts = whiteouts || wo
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("reading directory %q: %w", rel, err)
		}
	}
	if v, err := getxattr(src, xattrOpaque); err == nil && v == "y" {
		return setxattr(dst, xattrOpaque, "y", rel)
	}
	if whiteouts {
		return setxattr(dst, xattrOpaque, "x", rel)
	}
	return nil
}

// entry copies one entry; whiteout says it was a whiteout.
func (c *capturer) entry(src, dst int, name, rel string, depth int) (whiteout bool, err error) {
	if c.skip[rel] {
		return false, nil
	}
	if err := c.lim.entry(); err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("%q: %w", rel, err)
	}
	mode := st.Mode & 0o1777 // setuid and setgid cleared
	if st.Mode&0o6000 != 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		c.note("cleared the setuid/setgid bits of %s", rel)
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return false, fmt.Errorf("%q: mkdir: %w", rel, err)
		}
		s, err := c.open(src, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return false, fmt.Errorf("%q: %w", rel, err)
		}
		defer unix.Close(s)
		d, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("%q: %w", rel, err)
		}
		defer unix.Close(d)
		if err := c.dir(s, d, rel, depth+1); err != nil {
			return false, err
		}
		if err := unix.Fchmod(d, mode&^0o6000); err != nil {
			return false, err
		}
		_ = unix.UtimesNanoAt(d, "", times, unix.AT_EMPTY_PATH)
	case unix.S_IFREG:
		s, err := c.open(src, name, unix.O_RDONLY)
		if err != nil {
			return false, fmt.Errorf("%q: %w", rel, err)
		}
		defer unix.Close(s)
		if st.Size == 0 {
			if _, err := unix.Fgetxattr(s, xattrWhiteout, nil); err == nil {
				return true, c.whiteout(dst, name, rel)
			}
		}
		if st.Nlink > 1 {
			// Hard links stay links (and their bytes count once).
			id := [2]uint64{st.Dev, st.Ino}
			if first, ok := c.links[id]; ok {
				return false, c.link(first, dst, name, rel)
			}
			c.links[id] = rel
		}
		d, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return false, fmt.Errorf("%q: create: %w", rel, err)
		}
		df := os.NewFile(uintptr(d), rel)
		defer df.Close()
		n, err := io.Copy(df, budgetReader{fdReader(s), c.lim})
		c.u.size += n
		if err != nil {
			return false, fmt.Errorf("%q: %w", rel, err)
		}
		if err := unix.Fchmod(d, mode); err != nil {
			return false, err
		}
		_ = unix.UtimesNanoAt(d, "", times, unix.AT_EMPTY_PATH)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src, name, buf)
		if err != nil {
			return false, fmt.Errorf("%q: readlink: %w", rel, err)
		}
		// The target is data, resolved inside the sandbox's root when
		// used; nothing here follows it.
		if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
			return false, fmt.Errorf("%q: symlink: %w", rel, err)
		}
		_ = unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			// Overlayfs's whiteout: the step deleted this.
			return true, c.whiteout(dst, name, rel)
		}
		c.note("skipped device node %s: images may not carry devices", rel)
		return false, nil
	case unix.S_IFIFO:
		if err := unix.Mknodat(dst, name, unix.S_IFIFO|(mode&0o777), 0); err != nil {
			return false, fmt.Errorf("%q: mkfifo: %w", rel, err)
		}
	default:
		c.note("skipped %s: not a file, directory, link or FIFO", rel)
		return false, nil
	}
	if st.Uid != c.uid || st.Gid != c.gid {
		c.u.owners = append(c.u.owners, Owner{Path: rel, UID: relID(st.Uid, c.uid), GID: relID(st.Gid, c.gid)})
	}
	return false, nil
}

// relID is a host id as the sandbox whose root is base saw it.
func relID(id, base uint32) int {
	if id >= base && id-base < 1<<16 {
		return int(id - base)
	}
	return 65534 // nobody: not one of the sandbox's ids
}

// open opens name in dir without following a link. A file or directory
// its writer made unreadable (mode 0) is made readable first: it is the
// sandbox's, which is gone, and an unprivileged capturer is its owner.
func (c *capturer) open(dir int, name string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV}
	fd, err := unix.Openat2(dir, name, how)
	if err == unix.EACCES {
		mode := uint32(0o400)
		if flags&unix.O_DIRECTORY != 0 {
			mode = 0o500
		}
		if unix.Fchmodat(dir, name, mode, 0) == nil {
			fd, err = unix.Openat2(dir, name, how)
		}
	}
	return fd, err
}

// link makes dst/name a hard link to first, a file already copied
// (resolved through the directories this capture made: no links).
func (c *capturer) link(first string, dst int, name, rel string) error {
	dir, base := path.Split(first)
	parent := c.dst
	if dir != "" {
		fd, err := unix.Openat2(c.dst, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV})
		if err != nil {
			return fmt.Errorf("%q: hard link to %q: %w", rel, first, err)
		}
		defer unix.Close(fd)
		parent = fd
	}
	if err := unix.Linkat(parent, base, dst, name, 0); err != nil {
		return fmt.Errorf("%q: hard link to %q: %w", rel, first, err)
	}
	return nil
}

func (c *capturer) whiteout(dst int, name, rel string) error {
	fd, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("whiteout %q: %w", rel, err)
	}
	defer unix.Close(fd)
	return setxattr(fd, xattrWhiteout, "y", rel)
}

func getxattr(fd int, attr string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(fd, attr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// fdReader reads a descriptor it does not own (an *os.File would close
// it when collected).
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil && len(p) > 0 {
			return 0, io.EOF
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}
