//go:build linux

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzResolveInRoot throws arbitrary paths from outside at the agent's
// path resolution and file operations, in a root with every kind of link
// that has led out of sandboxes: "..", absolute links, links that climb,
// a magic link to a descriptor of a host directory, /proc/self, a loop.
// Whatever the path, nothing outside the root is opened, listed, created
// or removed.
func FuzzResolveInRoot(f *testing.F) {
	for _, seed := range []string{
		"/", ".", "..", "../../etc/passwd", "/a/f", "a//b/./f", "up/etc/passwd",
		"abs/f", "magic/secret", "magic/../secret", "procself/fd", "procself/root/etc",
		"loop/x", "/proc/self/fd/3", "/proc/self/cwd", "a/b/../../../..", "new/dir/x",
		strings.Repeat("n", 255), strings.Repeat("a/", 100),
	} {
		for op := range byte(5) {
			f.Add(op, seed)
		}
	}
	outside := f.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o644); err != nil {
		f.Fatal(err)
	}
	hostFD, err := unix.Open(outside, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		f.Fatal(err)
	}
	defer unix.Close(hostFD)

	f.Fuzz(func(t *testing.T, op byte, name string) {
		if strings.IndexByte(name, 0) >= 0 {
			return // not a path the kernel can take
		}
		top := t.TempDir()
		root := filepath.Join(top, "root")
		for _, d := range []string{"a/b", "proc"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		os.WriteFile(filepath.Join(root, "a/f"), []byte("in"), 0o644)
		for link, target := range map[string]string{
			"up": "../../..", "abs": "/a", "procself": "/proc/self", "loop": "loop",
			"magic": "/proc/self/fd/" + strconv.Itoa(hostFD),
		} {
			os.Symlink(target, filepath.Join(root, link))
		}
		r, err := openRoot(root, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(r.fd)
		inside := func(p string) bool { return p == root || strings.HasPrefix(p, root+"/") }

		switch op % 5 {
		case 0:
			fd, err := r.open(name, unix.O_PATH, 0)
			if err == nil {
				p, _ := fdPath(fd)
				unix.Close(fd)
				if !inside(p) {
					t.Fatalf("open(%q) opened %s, outside the root", name, p)
				}
			}
		case 1:
			if f, _, err := r.openRegular(name); err == nil {
				p, _ := fdPath(int(f.Fd()))
				f.Close()
				if !inside(p) {
					t.Fatalf("openRegular(%q) opened %s, outside the root", name, p)
				}
			}
		case 2:
			list, _ := r.readDir(name)
			for _, st := range list {
				if st.Name == "secret" {
					t.Fatalf("readDir(%q) listed the host directory", name)
				}
			}
		case 3:
			r.mkdirAll(name)
		case 4:
			r.removeAll(name)
		}
		// Nothing outside changed: not the host directory, not the root's
		// own parent.
		if b, err := os.ReadFile(secret); err != nil || string(b) != "host" {
			t.Fatalf("op %d on %q changed the host's file: %q, %v", op%5, name, b, err)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 1 {
			t.Fatalf("op %d on %q changed the host directory: %v", op%5, name, ents)
		}
		if ents, _ := os.ReadDir(top); len(ents) != 1 {
			t.Fatalf("op %d on %q made something beside the root: %v", op%5, name, ents)
		}
		if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
			t.Fatalf("op %d on %q removed the root itself", op%5, name)
		}
	})
}
