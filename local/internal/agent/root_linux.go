//go:build linux

package agent

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// The host's /etc entries a sandbox sees (read-only). An allowlist: host
// secrets (shadow, ssh keys, sudoers, credentials of installed tools) stay
// out, whatever else the host keeps there.
var etcAllow = []string{
	"alternatives", "bash.bashrc", "ca-certificates", "ca-certificates.conf",
	"debian_version", "fonts", "gai.conf", "host.conf", "inputrc",
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias", "localtime",
	"magic", "magic.mime", "matplotlibrc", "mime.types", "nsswitch.conf", "os-release",
	"perl", "profile", "protocols", "python3", "python3.*", "services", "ssl",
	"timezone", "xdg",
}

// Top-level host paths bound read-only (or recreated as the same symlink,
// as /bin -> usr/bin on merged-/usr systems).
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

var devFiles = []string{"null", "zero", "full", "random", "urandom", "tty"}

// The sandbox's root file system is built on the empty staging
// directory (prepareRoot, then finishRoot), and the agent pivots into it.
// It runs in the agent, as root of the sandbox's user namespace, inside
// its private mount namespace: nothing it mounts is visible to the host.

// preparedRoot is what prepareRoot made. ptsErr says why the sandbox has
// no pseudo-terminals, where its devpts could not be mounted (a sandbox
// without terminals still runs commands).
type preparedRoot struct {
	ptsErr error
	// detached has the result of detaching the host's tree after the
	// pivot (finishRoot), which runs while the agent goes on with what
	// names no path: see waitDetached.
	detached chan error
}

// waitDetached waits until the host's tree is detached from the
// sandbox's root, and makes / the working directory. Until then a path
// could still lead into the host's tree, so nothing that names a path
// runs before it, and nothing of the sandbox's runs at all.
func (pre *preparedRoot) waitDetached() error {
	if pre.detached == nil {
		return nil
	}
	if err := <-pre.detached; err != nil {
		return fmt.Errorf("detach host root: %w", err)
	}
	pre.detached = nil
	return unix.Chdir("/")
}

// prepareRoot does the part of building the root that needs no image:
// the staging directory gets a private tmpfs of cfg.DiskSize bytes, which
// holds everything the sandbox writes. With the host's system, that tmpfs
// is the root itself, writable like a container's root (programs create
// /app and the like), with the host's system bound into it read-only.
// With an image (whose layers may come later: agentproto.ImageRoot.Later),
// it holds the overlay's writable layer, and /dev and /proc are made in it
// ready to be moved into the overlay.
func prepareRoot(cfg *agentproto.Config) (*preparedRoot, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	staging := cfg.Staging
	if err := unix.Mount("tmpfs", staging, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755,uid=0,gid=0", cfg.DiskSize)); err != nil {
		return nil, fmt.Errorf("mount root tmpfs: %w", err)
	}
	pre := &preparedRoot{}
	if cfg.Image == nil {
		return pre, nil
	}
	in := func(p string) string { return path.Join(staging, p) }
	for _, d := range []string{"dev", "proc", "shm"} {
		if err := os.Mkdir(in(d), 0o755); err != nil {
			return nil, err
		}
	}
	if cfg.Separate {
		if err := unix.Lchown(in("shm"), 0, 0); err != nil {
			return nil, err
		}
	}
	var err error
	if pre.ptsErr, err = buildDev(cfg, in("dev"), in("shm")); err != nil {
		return nil, err
	}
	if err := buildProc(in("proc")); err != nil {
		return nil, err
	}
	return pre, nil
}

// finishRoot builds the rest of the root on what prepareRoot made, and
// pivots into it.
func finishRoot(cfg *agentproto.Config, pre *preparedRoot, layers []int) (err error) {
	staging := cfg.Staging
	root := staging
	// own gives what the agent creates in an image's tree to the
	// sandbox's root, as it goes (chownTree would copy the whole image up
	// into the writable layer).
	own := func(p string) error {
		if cfg.Image == nil || !cfg.Separate {
			return nil
		}
		if err := unix.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("chown %s: %w", strings.TrimPrefix(p, staging), err)
		}
		return nil
	}
	if cfg.Image != nil {
		if root, err = mountImage(cfg, staging, layers); err != nil {
			return err
		}
	}

	in := func(p string) string { return path.Join(root, p) }
	// realDir makes sure root/name (one component) is a directory of the
	// image's own, not a link that would lead the agent's mounts and
	// writes out of the image (it still sees the host here).
	realDir := func(name string, mode os.FileMode) error {
		p := in(name)
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
		return own(p)
	}

	hostname := cfg.Hostname
	generated := map[string]string{
		"hostname": hostname + "\n",
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n",
	}
	if cfg.Image == nil {
		for _, d := range systemDirs {
			if err := mirror("/"+d, in(d)); err != nil {
				return err
			}
		}
		// /etc: allowlisted host entries plus generated identity files.
		if err := os.Mkdir(in("etc"), 0o755); err != nil {
			return err
		}
		entries := cfg.Etc
		if len(entries) == 0 {
			entries = EtcEntries()
		}
		for _, m := range entries {
			if name, ok := strings.CutPrefix(m, "/etc/"); !ok || name == "" || strings.Contains(name, "/") || name == ".." || name == "." {
				return fmt.Errorf("not an entry of /etc: %q", m)
			}
			if err := mirrorEtc(m, in(m)); err != nil {
				return err
			}
		}
		generated["passwd"] = "root:x:0:0:root:" + cfg.WorkDir + ":/bin/sh\nsandbox-agent:x:1:1:the sandbox's agent:/:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
		generated["group"] = "root:x:0:\nsandbox-agent:x:1:\nnogroup:x:65534:\n"
	} else {
		// The image's /etc is the image's own (its users, its
		// configuration); the sandbox's identity files replace the
		// image's, as container runtimes do.
		if err := realDir("etc", 0o755); err != nil {
			return err
		}
		if cfg.Network {
			if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
				generated["resolv.conf"] = string(b)
			}
		}
	}
	for name, content := range generated {
		p := in("etc/" + name)
		if cfg.Image != nil {
			if err := os.RemoveAll(p); err != nil { // whatever the image had there, links included
				return err
			}
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = own(p)
		}
		if err != nil {
			return err
		}
	}
	if cfg.Network && cfg.Image == nil {
		if err := mirror("/etc/resolv.conf", in("etc/resolv.conf")); err != nil {
			return err
		}
	}

	if cfg.Image == nil {
		for _, d := range []string{"dev", "proc", "tmp", ".shm"} {
			if err := os.Mkdir(in(d), 0o755); err != nil {
				return err
			}
		}
		if pre.ptsErr, err = buildDev(cfg, in("dev"), in(".shm")); err != nil {
			return err
		}
		if err := buildProc(in("proc")); err != nil {
			return err
		}
	} else {
		// /dev and /proc, made by prepareRoot, move into the image.
		for _, d := range []string{"dev", "proc", "tmp", strings.Trim(cfg.WorkDir, "/")} {
			if err := realDir(d, 0o755); err != nil {
				return err
			}
		}
		for _, d := range []string{"dev", "proc"} {
			if err := unix.Mount(path.Join(staging, d), in(d), "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("move /%s into the image root: %w", d, err)
			}
		}
	}

	// Writable: /tmp and the work dir are directories of the root file
	// system, so the sandbox has one disk quota for all it writes (past it,
	// writes fail with ENOSPC inside). unix.Chmod: os.Chmod takes the
	// sticky bit as os.ModeSticky only.
	if err := unix.Chmod(in("tmp"), 0o1777); err != nil { // past the umask
		return err
	}
	if err := os.MkdirAll(in(cfg.WorkDir), 0o755); err != nil {
		return err
	}

	// What the agent made is the sandbox's root's, not the agent's own
	// (where the agent runs as a uid of its own).
	if cfg.Separate && cfg.Image == nil {
		if err := chownTree(root); err != nil {
			return err
		}
	}

	// Enter the new root; the host's tree is detached and unreachable.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The host's tree, now stacked on the new root, is detached by a
	// goroutine of its own: the kernel waits for an RCU grace period
	// before the call returns (milliseconds on a busy machine), which
	// the agent spends on work that names no path. "." is the working
	// directory of every thread: none changes it until waitDetached.
	pre.detached = make(chan error, 1)
	go func() { pre.detached <- unix.Unmount(".", unix.MNT_DETACH) }()
	return nil
}

// buildDev makes dev (an empty directory) the sandbox's /dev: a tmpfs
// with the harmless devices bound in, a devpts instance of its own, and
// shm (a directory of the sandbox's disk) as /dev/shm.
func buildDev(cfg *agentproto.Config, dev, shm string) (ptsErr, err error) {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755,uid=0,gid=0"); err != nil {
		return nil, fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range devFiles {
		if err := bindFile("/dev/"+d, path.Join(dev, d), false); err != nil {
			return nil, err
		}
	}
	// GPUs, when asked for: the NVIDIA device nodes (the driver's
	// libraries come with /usr).
	for _, d := range cfg.GPUs {
		if err := bindFile(d, path.Join(dev, strings.TrimPrefix(d, "/dev/")), false); err != nil {
			return nil, fmt.Errorf("bind GPU device: %w", err)
		}
	}
	// Pseudo-terminals: a devpts instance of the sandbox's own, so that
	// its terminals are numbered from 0 and neither the host's nor another
	// sandbox's are visible or reachable; /dev/ptmx is its ptmx. New
	// terminals belong to the sandbox's root (uid=, gid=).
	ptsErr = mountDevpts(dev)
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, path.Join(dev, name)); err != nil {
			return nil, err
		}
	}
	// /dev/shm is a directory of the root file system, bound in, so that
	// shared memory counts against the same quota as every other file.
	if err := os.Mkdir(path.Join(dev, "shm"), 0o755); err != nil {
		return nil, err
	}
	if err := unix.Chmod(shm, 0o1777); err != nil {
		return nil, err
	}
	if err := unix.Mount(shm, path.Join(dev, "shm"), "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind /dev/shm: %w", err)
	}
	return ptsErr, nil
}

// buildProc mounts a /proc of the sandbox's own pid namespace on dir, its
// host parts masked.
func buildProc(dir string) error {
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return maskProc(dir)
}

// mountDevpts mounts a new devpts instance on dev/pts and makes dev/ptmx
// its ptmx.
func mountDevpts(dev string) error {
	pts := path.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("newinstance,ptmxmode=0666,mode=0620,uid=0,gid=0,max=%d", maxTerminals)
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, opts); err != nil {
		os.Remove(pts)
		return fmt.Errorf("mount devpts: %w", err)
	}
	return os.Symlink("pts/ptmx", path.Join(dev, "ptmx"))
}

// Parts of /proc that describe the host, not the sandbox, and are hidden
// as container runtimes hide them: files read as empty (/dev/null is bound
// on them), directories as empty and read-only. Which kernel, with which
// configuration and command line, with which devices and modules, timers
// and keys of other processes: what an attacker fingerprints the host
// with.
var (
	maskedProcFiles = []string{
		"cmdline", "config.gz", "kcore", "keys", "key-users", "kallsyms", "kmsg",
		"latency_stats", "modules", "sched_debug", "sysrq-trigger", "timer_list",
		"timer_stats", "vmallocinfo", "iomem", "ioports",
	}
	maskedProcDirs = []string{"acpi", "asound", "bus", "driver", "irq", "scsi"}
)

// maskProc hides the host's parts of a /proc mounted at dir. What this
// kernel lacks is skipped.
func maskProc(dir string) error {
	for _, f := range maskedProcFiles {
		p := path.Join(dir, f)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mask /proc/%s: %w", f, err)
		}
	}
	for _, d := range maskedProcDirs {
		p := path.Join(dir, d)
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=0555"); err != nil {
			return fmt.Errorf("mask /proc/%s: %w", d, err)
		}
	}
	return nil
}

// chownTree gives everything under root on root's own file system (not
// the mounts on it) to uid and gid 0.
func chownTree(root string) error {
	var rootSt unix.Stat_t
	if err := unix.Lstat(root, &rootSt); err != nil {
		return err
	}
	return fs.WalkDir(os.DirFS(root), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		p := path.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Dev != rootSt.Dev {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if err := unix.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("chown %s: %w", strings.TrimPrefix(p, root), err)
		}
		return nil
	})
}

// EtcEntries lists the host's /etc entries that a sandbox's root mirrors:
// those of the allowlist that exist, patterns expanded, as paths, each
// once. The host resolves them and hands them to each agent
// (agentproto.Config.Etc).
func EtcEntries() []string {
	var out []string
	for _, pattern := range etcAllow {
		for _, m := range globEtc(pattern) {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// globEtc returns the entries of the host's /etc that pattern (a name,
// or a path.Match pattern of one) names, sorted, as filepath.Glob would.
func globEtc(pattern string) []string {
	if !strings.ContainsAny(pattern, `*?[\`) {
		if _, err := os.Lstat("/etc/" + pattern); err != nil {
			return nil
		}
		return []string{"/etc/" + pattern}
	}
	entries, err := os.ReadDir("/etc") // sorted
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if ok, _ := path.Match(pattern, e.Name()); ok {
			out = append(out, "/etc/"+e.Name())
		}
	}
	return out
}

// mirror makes dst look like the host's src: the same symlink, or a
// read-only bind of the directory or file. A missing src is skipped.
func mirror(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return nil
	}
	if err := os.MkdirAll(path.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
		return bindReadOnly(src, dst)
	default:
		return bindFile(src, dst, true)
	}
}

// mirrorEtc is mirror for /etc entries: small regular files are copied
// into the root's tmpfs instead of bound, which is several times cheaper
// than a bind plus a read-only remount, and just as read-only once the
// root is remounted.
func mirrorEtc(src, dst string) error {
	// Opened without following a link and without blocking on a FIFO;
	// what is not a small regular file is mirrored (a link as a link, a
	// directory bound). System calls directly, not *os.File: each file
	// would otherwise also be offered to the runtime's poller and taken
	// off it again, which regular files refuse anyway.
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil && err != unix.ELOOP {
		// A file unreadable for the agent's uid is left out; anything
		// else (a directory it may not list) is mirrored as before.
		if fi, lerr := os.Lstat(src); lerr == nil && !fi.Mode().IsRegular() {
			return mirror(src, dst)
		}
		return nil
	}
	var st unix.Stat_t
	if err == nil {
		if err = unix.Fstat(in, &st); err != nil {
			unix.Close(in)
			return err
		}
	}
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > 1<<20 {
		if err == nil {
			unix.Close(in)
		}
		return mirror(src, dst)
	}
	defer unix.Close(in)
	out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, st.Mode&0o777)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// The kernel copies (sendfile): a buffer of the agent's would cost a
	// page fault per page of a freshly started process, which was most
	// of what copying /etc cost. Where the host's file system cannot
	// send a file, an ordinary copy.
	copied, err := sendFile(out, in)
	if err != nil && copied == 0 {
		err = copyFile(out, in)
	}
	if cerr := unix.Close(out); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// copyFile copies what is left of in to out through a buffer: the rare
// file systems that cannot sendfile. The descriptors stay the caller's.
func copyFile(out, in int) error {
	dupOut, err := unix.Dup(out)
	if err != nil {
		return err
	}
	fo := os.NewFile(uintptr(dupOut), "out")
	defer fo.Close()
	dupIn, err := unix.Dup(in)
	if err != nil {
		return err
	}
	fi := os.NewFile(uintptr(dupIn), "in")
	defer fi.Close()
	_, err = io.Copy(fo, fi)
	return err
}

// sendFile copies what is left of in to out with sendfile(2), and says
// how many bytes it copied.
func sendFile(out, in int) (int64, error) {
	var copied int64
	for {
		n, err := unix.Sendfile(out, in, nil, 1<<20)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return copied, err
		}
		if n == 0 {
			return copied, nil
		}
		copied += int64(n)
	}
}

func bindFile(src, dst string, readOnly bool) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if !readOnly {
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		return nil
	}
	return bindReadOnly(src, dst)
}

// bindReadOnly binds src on dst and remounts it read-only. The remount must
// repeat the flags the kernel locked on the source mount (nosuid, nodev,
// noexec, atime) or an unprivileged user namespace gets EPERM.
func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", strings.TrimPrefix(src, "/"), err)
	}
	return nil
}

// loopbackUp brings up "lo" in the sandbox's fresh network namespace, so
// servers and clients inside the sandbox can talk over 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
