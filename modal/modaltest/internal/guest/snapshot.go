//go:build linux

package guest

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Snapshots are tar archives. A whole-filesystem snapshot holds every file
// on the sandbox's writable file systems (its root, /tmp, the work dir, and
// so on), names relative to "/": what the sandbox's code changed, since the
// system directories are read-only binds of the host's. The tool's own
// directory and the kernel's file systems are left out.

// skipFSTypes are file systems a snapshot never holds, writable or not.
var skipFSTypes = map[string]bool{
	"proc": true, "sysfs": true, "devpts": true, "devtmpfs": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true, "tracefs": true,
	"bpf": true, "fusectl": true, "pstore": true, "configfs": true, "hugetlbfs": true,
	"autofs": true, "binfmt_misc": true, "nsfs": true,
}

// skipTrees are never archived.
var skipTrees = []string{"/proc", "/sys", "/dev", "/__modal"}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// mounts are the sandbox's mounts, as a snapshot sees them.
type mounts struct {
	// points are the mount points of the writable file systems, and devs
	// their devices.
	points []string
	devs   map[uint64]bool
	// overlays are the devices of writable overlay mounts (an image's
	// root): their non-directory files report the device of the layer
	// that holds them, not the overlay's.
	overlays map[uint64]bool
	// all holds every mount point, writable or not.
	all map[string]bool
}

// writableMounts returns the sandbox's mounts.
func writableMounts() (m mounts, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m, err
	}
	defer f.Close()
	m.devs, m.overlays, m.all = map[uint64]bool{}, map[uint64]bool{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < 6 || sep+1 >= len(fields) {
			continue
		}
		point := unescapeMount(fields[4])
		m.all[point] = true
		opts := "," + fields[5] + ","
		if !strings.Contains(opts, ",rw,") || skipFSTypes[fields[sep+1]] || underAny(point, skipTrees) {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(point, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			continue // a bind-mounted file: never ours to keep
		}
		m.points = append(m.points, point)
		m.devs[st.Dev] = true
		if fields[sep+1] == "overlay" {
			m.overlays[st.Dev] = true
		}
	}
	return m, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func snapshot(args []string, stdout, stderr io.Writer) int {
	var err error
	switch len(args) {
	case 0:
		err = snapshotFilesystem(stdout)
	case 1:
		err = snapshotTree(args[0], stdout)
	default:
		err = errors.New("usage: snapshot [DIR]")
	}
	if err != nil {
		fmt.Fprintf(stderr, "snapshot: %v\n", err)
		return 1
	}
	return 0
}

func snapshotFilesystem(w io.Writer) error {
	m, err := writableMounts()
	if err != nil {
		return err
	}
	// onOverlay holds the directories walked that are on a writable
	// overlay.
	onOverlay := map[string]bool{}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "/" {
				return err
			}
			return nil // vanished or unreadable: not part of the snapshot
		}
		if underAny(p, skipTrees) {
			return fs.SkipDir
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		if d.IsDir() && m.overlays[st.Dev] {
			onOverlay[p] = true
		}
		// A file of an overlay reports its layer's device: it belongs to
		// the overlay when its directory does and it is not a mount of its
		// own (a bind-mounted file is never the sandbox's to keep).
		inOverlay := !d.IsDir() && onOverlay[filepath.Dir(p)] && !m.all[p]
		if !m.devs[st.Dev] && !inOverlay {
			if d.IsDir() && !hasMountBelow(p, m.points) {
				return fs.SkipDir
			}
			return nil
		}
		if p == "/" {
			return nil
		}
		return addToTar(tw, p, p[1:])
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func hasMountBelow(dir string, points []string) bool {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for _, p := range points {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func snapshotTree(root string, w io.Writer) error {
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil
		}
		if underAny(p, skipTrees) {
			return fs.SkipDir
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return addToTar(tw, p, rel)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// addToTar adds one file, directory or symlink; other kinds (sockets,
// devices) are skipped.
func addToTar(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	var link string
	switch mode := fi.Mode(); {
	case mode&fs.ModeSymlink != 0:
		if link, err = os.Readlink(p); err != nil {
			return nil
		}
	case mode.IsRegular(), mode.IsDir(), mode&fs.ModeNamedPipe != 0:
	default:
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	if !fi.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil // unreadable: left out
	}
	defer f.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil && n < hdr.Size {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func restore(args []string, stdin io.Reader, stderr io.Writer) int {
	dest := "/"
	if len(args) > 0 {
		dest = args[0]
	}
	failures, err := extract(tar.NewReader(stdin), dest, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "restore: %v\n", err)
		return 1
	}
	if failures > 0 {
		fmt.Fprintf(stderr, "restore: %d entries could not be restored\n", failures)
		return 1
	}
	return 0
}

func extract(tr *tar.Reader, dest string, stderr io.Writer) (failures int, err error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return 0, err
	}
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failures, err
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		target := filepath.Join(dest, name)
		if err := extractOne(tr, hdr, target); err != nil {
			fmt.Fprintf(stderr, "restore %s: %v\n", target, err)
			failures++
			continue
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i].path, dirs[i].mtime, dirs[i].mtime)
	}
	return failures, nil
}

func extractOne(tr *tar.Reader, hdr *tar.Header, target string) error {
	mode := fs.FileMode(hdr.Mode).Perm() | fs.FileMode(hdr.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
			if err := os.Remove(target); err != nil {
				return err
			}
		}
		if err := os.Mkdir(target, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return os.Chmod(target, mode)
	case tar.TypeReg:
		if fi, err := os.Lstat(target); err == nil && (fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Chmod(target, mode); err != nil {
			return err
		}
		return os.Chtimes(target, hdr.ModTime, hdr.ModTime)
	case tar.TypeSymlink:
		if cur, err := os.Readlink(target); err == nil && cur == hdr.Linkname {
			return nil
		}
		if fi, err := os.Lstat(target); err == nil {
			if fi.IsDir() {
				return fmt.Errorf("a directory is in the way of a symlink")
			}
			if err := os.Remove(target); err != nil {
				return err
			}
		}
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeFifo:
		os.Remove(target)
		return syscall.Mkfifo(target, uint32(mode))
	}
	return nil // other kinds are never written by snapshot
}
