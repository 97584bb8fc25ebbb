//go:build linux

package agentbin

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// The kernel's copy from this program's file gives exactly the embedded
// bytes.
func TestCopyFromExecutable(t *testing.T) {
	if len(program) == 0 {
		t.Skip(ErrNotEmbedded)
	}
	fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "test")
	defer f.Close()
	if err := copyFromExecutable(fd); err != nil {
		t.Fatalf("copyFromExecutable: %v", err)
	}
	got := make([]byte, len(program)+1)
	n, _ := f.ReadAt(got, 0)
	if !bytes.Equal(got[:n], program) {
		t.Errorf("copied %d bytes, not the embedded program's %d", n, len(program))
	}
}

func TestParseMapping(t *testing.T) {
	m, ok := parseMapping("00fef000-01fe5000 r--p 00bef000 fe:01 9995503                            /tmp/compute\n")
	want := mapping{start: 0xfef000, end: 0x1fe5000, offset: 0xbef000, major: 0xfe, minor: 1, inode: 9995503}
	if !ok || m != want {
		t.Errorf("parseMapping = %+v, %v; want %+v", m, ok, want)
	}
	for _, bad := range []string{"", "00400000-00402000 r--p", "zz-00402000 r--p 0 fe:00 1", "00402000-00400000 r--p 0 fe:00 1", "00400000-00402000 r--p 0 fe00 1"} {
		if _, ok := parseMapping(bad); ok {
			t.Errorf("parseMapping(%q) accepted", bad)
		}
	}
}
