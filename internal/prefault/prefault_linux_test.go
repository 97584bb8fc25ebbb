//go:build linux

package prefault

import (
	"os"
	"strings"
	"testing"
	"unsafe"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		line   string
		lo, hi uintptr
		ok     bool
	}{
		{"00400000-00402000 r--p 00000000 fe:00 9995503 /tmp/compute", 0x400000, 0x402000, true},
		{"31eefc400000-31eefcc00000 rw-p 00000000 00:00 0", 0x31eefc400000, 0x31eefcc00000, true},
		{"7ffd1b5e2000-7ffd1b603000 rw-p 00000000 00:00 0 [stack]", 0x7ffd1b5e2000, 0x7ffd1b603000, true},
		{"", 0, 0, false},
		{"-1000 rw-p", 0, 0, false},
		{"1000 rw-p", 0, 0, false},
		{"1000-", 0, 0, false},
	} {
		lo, hi, ok := parseRange([]byte(tc.line))
		if lo != tc.lo || hi != tc.hi || ok != tc.ok {
			t.Errorf("parseRange(%q) = %#x, %#x, %v; want %#x, %#x, %v", tc.line, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}

// mappingOf finds the heap's mapping, which the kernel's own list agrees
// holds the object, and which is writable.
func TestMappingOf(t *testing.T) {
	p := uintptr(unsafe.Pointer(sink))
	lo, hi, ok := mappingOf(p)
	if !ok || lo > p || p >= hi {
		t.Fatalf("mappingOf(%#x) = %#x, %#x, %v", p, lo, hi, ok)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if l, h, ok := parseRange([]byte(line)); ok && l == lo && h == hi {
			if f := strings.Fields(line); len(f) < 2 || !strings.HasPrefix(f[1], "rw") {
				t.Errorf("the heap object's mapping is not writable: %q", line)
			}
			return
		}
	}
	t.Errorf("no line of /proc/self/maps is %#x-%#x:\n%s", lo, hi, maps)
}
