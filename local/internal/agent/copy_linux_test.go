//go:build linux

package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// copyFile, mirrorEtc's way where sendfile fails, copies what is left of
// the source and leaves both descriptors open.
func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("0123456789abcdef"), 5000) // past one 32 KiB buffer
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	out, err := unix.Open(filepath.Join(dir, "dst"), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(out)
	if err := copyFile(out, in); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "dst"))
	if !bytes.Equal(got, want) {
		t.Errorf("copied %d bytes; want the source's %d", len(got), len(want))
	}
	for name, fd := range map[string]int{"in": in, "out": out} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			t.Errorf("the %s descriptor was closed: %v", name, err)
		}
	}
}
