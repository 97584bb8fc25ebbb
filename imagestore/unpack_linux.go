package imagestore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteouts in an unpacked layer, in the form overlayfs reads with its
// "userxattr" mount option (Linux 6.8 and later; the form composefs
// uses), which works where mknod(2) of a 0/0 character device does not
// (an unprivileged unpacker):
//
//   - a deleted NAME (".wh.NAME" in the layer) is an empty regular file
//     NAME with the extended attribute user.overlay.whiteout, and its
//     directory carries user.overlay.opaque="x" ("holds xattr whiteouts");
//   - an opaque directory (".wh..wh..opq" in it) carries
//     user.overlay.opaque="y".
//
// Overlayfs honours both in lower layers only, which is all these are.
// Extended attributes that a layer's tar headers carry are never applied,
// so a layer cannot forge whiteouts, redirects or file capabilities.
const (
	xattrWhiteout = "user.overlay.whiteout"
	xattrOpaque   = "user.overlay.opaque"
)

// extractor unpacks one layer's tar stream into root, never following a
// path out of it: every parent directory is resolved with
// openat2(RESOLVE_IN_ROOT), so a symlink unpacked earlier ("x -> /etc")
// resolves inside the layer, as it will inside the sandbox, and every
// final component is created relative to that descriptor without
// following links.
type extractor struct {
	root      int // O_PATH descriptor of the layer root
	lim       *limits
	dirs      map[string]dirMeta
	opaque    map[string]bool
	whiteouts map[string][]string
	owners    []Owner
	notes     []string
	size      int64 // bytes of regular files written
}

type dirMeta struct {
	mode  uint32
	mtime unix.Timeval
}

func unpackTar(r io.Reader, rootDir string, lim *limits) (*unpacked, error) {
	if err := os.Mkdir(rootDir, 0o700); err != nil {
		return nil, err
	}
	fd, err := unix.Open(rootDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rootDir, Err: err}
	}
	defer unix.Close(fd)
	x := &extractor{root: fd, lim: lim, dirs: map[string]dirMeta{}, opaque: map[string]bool{}, whiteouts: map[string][]string{}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the layer: %w", err)
		}
		if err := lim.entry(); err != nil {
			return nil, err
		}
		if err := x.entry(hdr, tr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := x.finish(); err != nil {
		return nil, err
	}
	// The root of the layer is the sandbox's "/": whatever the tar said
	// of "./", every user must be able to traverse it.
	if err := os.Chmod(rootDir, 0o755); err != nil {
		return nil, err
	}

	return &unpacked{size: x.size, owners: x.owners, notes: x.notes}, nil
}

// cleanName turns a tar path into one relative to the layer root: a
// leading "/" is dropped (as tar(1) does), and a path that climbs out
// with ".." is refused.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("path holds a NUL byte")
	}
	p := path.Clean("/" + name)
	// Clean of a rooted path drops leading "..", so compare with the
	// unrooted form to see whether the name tried to climb.
	if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") || strings.Contains(c, "/../") {
		return "", fmt.Errorf("%w: the path climbs out of the layer through a .. component", ErrHostileLayer)
	}
	return strings.TrimPrefix(p, "/"), nil
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if name == "" {
		// The layer root itself ("./"): its mode is ours.
		return nil
	}
	if strings.HasPrefix(base, ".wh.") {
		switch {
		case base == ".wh..wh..opq":
			x.opaque[dir] = true
		case strings.HasPrefix(base, ".wh..wh."):
			// AUFS's own bookkeeping (.wh..wh.plnk, ...): meaningless here.
		default:
			victim := strings.TrimPrefix(base, ".wh.")
			if victim == "." || victim == ".." {
				return fmt.Errorf("%w: a whiteout of %q", ErrHostileLayer, victim)
			}
			x.whiteouts[dir] = append(x.whiteouts[dir], victim)
		}
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock:
		x.note("skipped device node %s (%d:%d): images may not carry devices", name, hdr.Devmajor, hdr.Devminor)
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		x.note("skipped %s: unsupported tar entry type %q", name, hdr.Typeflag)
		return nil
	}
	parent, closeParent, err := x.openDir(dir, true)
	if err != nil {
		return err
	}
	defer closeParent()
	mode := uint32(hdr.Mode) & 0o1777 // setuid and setgid cleared
	if uint32(hdr.Mode)&0o6000 != 0 && hdr.Typeflag != tar.TypeDir {
		x.note("cleared the setuid/setgid bits of %s", name)
	}
	mtime := unix.NsecToTimeval(hdr.ModTime.UnixNano())
	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := x.remove(parent, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if err == unix.ENOENT {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		} else if err != nil {
			return err
		}
		x.dirs[name] = dirMeta{mode: mode &^ 0o6000, mtime: mtime}
	case tar.TypeReg:
		if err := x.remove(parent, base); err != nil {
			return err
		}
		fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		f := os.NewFile(uintptr(fd), name)
		n, err := io.Copy(f, budgetReader{body, x.lim})
		x.size += n
		if err == nil {
			err = unix.Fchmod(fd, mode)
		}
		if err == nil {
			err = unix.Futimes(fd, []unix.Timeval{mtime, mtime})
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: a symlink with an empty or NUL target", ErrHostileLayer)
		}
		if err := x.remove(parent, base); err != nil {
			return err
		}
		// The target is data, resolved inside the sandbox's root when
		// used; nothing here ever follows it.
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		_ = unix.UtimesNanoAt(parent, base, []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		tdir, tbase := path.Split(target)
		if tbase == "" {
			return fmt.Errorf("%w: a hardlink to the layer root", ErrHostileLayer)
		}
		tparent, closeT, err := x.openDir(strings.TrimSuffix(tdir, "/"), false)
		if err != nil {
			return fmt.Errorf("%w: hardlink target %q is not in the layer: %v", ErrHostileLayer, hdr.Linkname, err)
		}
		defer closeT()
		var st unix.Stat_t
		if err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%w: hardlink target %q is not (yet) in the layer", ErrHostileLayer, hdr.Linkname)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("%w: a hardlink to directory %q", ErrHostileLayer, hdr.Linkname)
		}
		if target == name {
			return nil
		}
		if err := x.remove(parent, base); err != nil {
			return err
		}
		// Flags 0: a link to a symlink links the symlink itself.
		if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
			return fmt.Errorf("link: %w", err)
		}
	case tar.TypeFifo:
		if err := x.remove(parent, base); err != nil {
			return err
		}
		if err := unix.Mknodat(parent, base, unix.S_IFIFO|(mode&0o777), 0); err != nil {
			return fmt.Errorf("mkfifo: %w", err)
		}
	}
	if hdr.Uid != 0 || hdr.Gid != 0 {
		x.owners = append(x.owners, Owner{Path: name, UID: hdr.Uid, GID: hdr.Gid})
	}
	return nil
}

func (x *extractor) note(format string, args ...any) {
	if len(x.notes) < 100 {
		x.notes = append(x.notes, fmt.Sprintf(format, args...))
	}
}

// remove makes room for a new entry at parent/base: whatever is there
// goes, an empty directory included; a directory with entries is an
// error (a layer does not replace a tree it also fills).
func (x *extractor) remove(parent int, base string) error {
	err := unix.Unlinkat(parent, base, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(parent, base, unix.AT_REMOVEDIR)
	}
	if err == nil || err == unix.ENOENT {
		return nil
	}
	return fmt.Errorf("replacing %q: %w", base, err)
}

// openDir resolves rel (a cleaned path relative to the layer root)
// inside the root and returns an O_PATH descriptor of it; with create,
// missing directories are made (mode 0755 unless an entry says
// otherwise).
func (x *extractor) openDir(rel string, create bool) (int, func(), error) {
	if rel == "" {
		return x.root, func() {}, nil
	}
	fd, err := x.resolve(rel)
	if err == nil {
		return fd, func() { unix.Close(fd) }, nil
	}
	if !create || err != unix.ENOENT {
		return -1, nil, fmt.Errorf("directory %q: %w", rel, err)
	}
	cur := x.root
	closeCur := func() {}
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		fd, err := x.resolve(prefix)
		if err == unix.ENOENT {
			if err := unix.Mkdirat(cur, part, 0o700); err != nil {
				closeCur()
				if err == unix.EEXIST {
					return -1, nil, fmt.Errorf("%w: directory %q is a dangling symlink", ErrHostileLayer, prefix)
				}
				return -1, nil, fmt.Errorf("mkdir %q: %w", prefix, err)
			}
			if _, ok := x.dirs[prefix]; !ok {
				x.dirs[prefix] = dirMeta{mode: 0o755}
			}
			fd, err = x.resolve(prefix)
		}
		closeCur()
		if err != nil {
			return -1, nil, fmt.Errorf("directory %q: %w", prefix, err)
		}
		cur = fd
		closeCur = func() { unix.Close(fd) }
	}
	return cur, closeCur, nil
}

// resolve opens rel as a directory inside the root: symlinks on the way
// resolve as if the root were "/", ".." stops at it, no magic links, no
// other mounts.
func (x *extractor) resolve(rel string) (int, error) {
	for {
		fd, err := unix.Openat2(x.root, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// finish writes the whiteouts and opaque markers, then gives directories
// their modes and times (last, as writing into them changes both, and a
// read-only directory could not be written into).
func (x *extractor) finish() error {
	dirs := make([]string, 0, len(x.whiteouts)+len(x.opaque))
	for d := range x.whiteouts {
		dirs = append(dirs, d)
	}
	for d := range x.opaque {
		if _, ok := x.whiteouts[d]; !ok {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if err := x.markDir(d); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(x.dirs))
	for d := range x.dirs {
		names = append(names, d)
	}
	// Deepest first, so that a parent's mode never blocks a child.
	sort.Slice(names, func(i, j int) bool { return strings.Count(names[i], "/") > strings.Count(names[j], "/") })
	for _, d := range names {
		fd, err := unix.Openat2(x.root, d, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			// Replaced by a later entry (a symlink or a file): its own
			// metadata stands.
			continue
		}
		m := x.dirs[d]
		err = unix.Fchmod(fd, m.mode)
		if err == nil && (m.mtime.Sec != 0 || m.mtime.Usec != 0) {
			err = unix.Futimes(fd, []unix.Timeval{m.mtime, m.mtime})
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d, err)
		}
	}
	return nil
}

func (x *extractor) markDir(d string) error {
	dfd, closeD, err := x.openDir(d, true)
	if err != nil {
		return err
	}
	defer closeD()
	// fsetxattr needs a real descriptor, not O_PATH.
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("directory %q: %w", d, err)
	}
	defer unix.Close(fd)
	if x.opaque[d] {
		// Opaque hides everything below, so its whiteouts are moot.
		return setxattr(fd, xattrOpaque, "y", d)
	}
	made := false
	for _, name := range x.whiteouts[d] {
		var st unix.Stat_t
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			// The same layer adds what it deletes: the file wins.
			continue
		}
		wfd, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("whiteout %q: %w", path.Join(d, name), err)
		}
		err = setxattr(wfd, xattrWhiteout, "y", path.Join(d, name))
		unix.Close(wfd)
		if err != nil {
			return err
		}
		made = true
	}
	if made {
		return setxattr(fd, xattrOpaque, "x", d)
	}
	return nil
}

func setxattr(fd int, attr, value, name string) error {
	if err := unix.Fsetxattr(fd, attr, []byte(value), 0); err != nil {
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			return fmt.Errorf("%s: the cache's file system does not support user extended attributes, which hold whiteouts; "+
				"set COMPUTE_CACHE_DIR to a directory on ext4, xfs, btrfs or tmpfs: %w", name, err)
		}
		return fmt.Errorf("%s: setting %s: %w", name, attr, err)
	}
	return nil
}

// syncFS flushes the file system that holds dir: a layer is renamed into
// place as complete only once its files are on disk, or a crash could
// leave a complete-looking layer of empty files. One syncfs is far
// cheaper than an fsync per file.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
