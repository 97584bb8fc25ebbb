//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Attacks of the second red-team round (each broke an earlier version):
// what hostile code, or a hostile caller of the API, tried, and what must
// hold now. The first round's attacks are in escape_test.go and
// isolation_test.go.

// hostDirFD opens a host directory holding a secret file the way a
// careless parent does (no close-on-exec) at a fixed high descriptor
// number, so a sandbox agent started afterwards inherits it.
func hostDirFD(t *testing.T) (dir string, fd int) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	raw, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0) // no O_CLOEXEC on purpose
	if err != nil {
		t.Fatal(err)
	}
	fd = 77
	if err := syscall.Dup2(raw, fd); err != nil {
		t.Fatal(err)
	}
	syscall.Close(raw)
	t.Cleanup(func() { syscall.Close(fd) })
	return dir, fd
}

// Threat: host files through a descriptor the owner leaked to the agent
// (a shell's "9<dir", socket activation). The file API and a command's
// working directory used to follow /proc/self/fd/N (and /proc/1/fd/N,
// /dev/fd/N, a symlink planted to them) into the host directory.
func TestAttackInheritedHostDescriptor(t *testing.T) {
	dir, fd := hostDirFD(t)
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	ctx := context.Background()
	fsys := sb.Filesystem()
	n := fmt.Sprint(fd)
	shell(t, sb, "ln -s /proc/self/fd/"+n+" /workspace/planted; ln -s /proc/1/fd/"+n+" /workspace/planted1")
	for _, p := range []string{
		"/proc/self/fd/" + n + "/secret",
		"/proc/self/fd/" + n + "/../../etc/passwd",
		"/proc/1/fd/" + n + "/secret",
		"/dev/fd/" + n + "/secret",
		"/workspace/planted/secret",
		"planted1/secret",
	} {
		if data, err := fsys.ReadFile(ctx, p); err == nil {
			t.Errorf("ReadFile(%q) = %q: read through a host descriptor", p, data)
		}
		if err := fsys.WriteFile(ctx, p+"-written", []byte("x")); err == nil {
			t.Errorf("WriteFile(%q) succeeded", p+"-written")
		}
		if list, err := fsys.ReadDir(ctx, filepath.Dir(p)); err == nil {
			for _, fi := range list {
				if fi.Name == "secret" {
					t.Errorf("ReadDir(%q) lists the host directory", filepath.Dir(p))
				}
			}
		}
		fsys.Remove(ctx, p)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret")); err != nil {
		t.Errorf("the host's file was removed through the sandbox: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the host directory was written through the sandbox: %v", ents)
	}
	for _, d := range []string{"/proc/self/fd/" + n, "/proc/1/fd/" + n, "/dev/fd/" + n, "/workspace/planted"} {
		res, err := sb.Run(ctx, []string{"ls"}, &compute.RunOptions{Dir: d})
		if err == nil && strings.Contains(res.Stdout, "secret") {
			t.Errorf("a command in Dir %q lists the host directory: %q", d, res.Stdout)
		}
	}
	// The agent itself holds no descriptor it did not open: nothing at
	// the leaked number, and nothing of the host's anywhere.
	res := shell(t, sb, "ls -l /proc/1/fd/ 2>&1; echo; ls /proc/1/fd/"+n+"/ 2>&1")
	if strings.Contains(res.Stdout, "secret") || strings.Contains(res.Stdout, dir) {
		t.Errorf("the agent holds the host descriptor:\n%s", res.Stdout)
	}
}

// Threat: the file API serving the agent's own process entries (its
// executable, its memory map, which name host paths).
func TestAttackAgentProcEntries(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	fsys := sb.Filesystem()
	shell(t, sb, "ln -s /proc/self /workspace/me")
	for _, p := range []string{"/proc/self/exe", "/proc/self/maps", "/proc/1/maps", "/proc/1/environ", "/proc/thread-self/status", "me/maps", "/proc/1/root/etc/hostname"} {
		if data, err := fsys.ReadFile(ctx, p); err == nil {
			t.Errorf("ReadFile(%q) served %d bytes of the agent's process entries", p, len(data))
		}
	}
	if _, err := fsys.Stat(ctx, "/proc/1/exe"); err == nil {
		t.Error("Stat(/proc/1/exe) succeeded")
	}
	// The rest of /proc is a file system like any other.
	if data, err := fsys.ReadFile(ctx, "/proc/cpuinfo"); err != nil || len(data) == 0 {
		t.Errorf("ReadFile(/proc/cpuinfo) = %d bytes, %v", len(data), err)
	}
}

// Threat: a FIFO (or any special file) planted by sandboxed code wedges
// the agent: each read blocked it for good, leaking descriptors and a
// thread, until every operation failed.
func TestAttackSpecialFiles(t *testing.T) {
	sb := newSandbox(t, nil)
	fsys := sb.Filesystem()
	shell(t, sb, "mkfifo /workspace/fifo && python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"/workspace/sock\")'")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard, not a speed limit
	defer cancel()
	for i := range 300 {
		for _, p := range []string{"fifo", "sock", "/dev/zero", "/dev/tty"} {
			_, err := fsys.ReadFile(ctx, p)
			if err == nil {
				t.Fatalf("ReadFile(%q) succeeded", p)
			}
			if ctx.Err() != nil {
				t.Fatalf("ReadFile(%q) blocked (round %d): %v", p, i, err)
			}
			if i == 0 && p == "fifo" {
				t.Log(err)
				if !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("ReadFile of a FIFO: %v, want it to say the file is not a regular one", err)
				}
			}
		}
	}
	// Writing over a FIFO replaces it; it never blocks.
	if err := fsys.WriteFile(ctx, "fifo", []byte("now a file")); err != nil {
		t.Fatal(err)
	}
	if data, err := fsys.ReadFile(ctx, "fifo"); err != nil || string(data) != "now a file" {
		t.Fatalf("after writing over the FIFO: %q, %v", data, err)
	}
	// The sandbox is still whole.
	if res, err := sb.RunCommand(ctx, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("after 1200 refused reads: %+v, %v", res, err)
	}
}

// Threat: none; a valid long name (up to 255 bytes) failed in WriteFile
// because the temporary file's name, built from it, was too long.
func TestWriteLongFileName(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	for _, n := range []int{200, 245, 255} {
		name := strings.Repeat("n", n)
		if err := sb.Filesystem().WriteFile(ctx, name, []byte("x")); err != nil {
			t.Fatalf("%d-byte name: %v", n, err)
		}
		if data, err := sb.Filesystem().ReadFile(ctx, name); err != nil || string(data) != "x" {
			t.Fatalf("%d-byte name read back: %q, %v", n, data, err)
		}
	}
	if err := sb.Filesystem().WriteFile(ctx, strings.Repeat("n", 256), []byte("x")); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("256-byte name: %v, want ENAMETOOLONG", err)
	}
}
