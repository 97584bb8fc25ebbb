//go:build linux

package prefault

import (
	"syscall"
	"unsafe"
)

// maxPopulate bounds what is made resident.
const maxPopulate = 8 << 20

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the range
// in, writable, now.
const madvPopulateWrite = 23

// sink is a heap object: its address says where the heap is. Kept in a
// package variable so that it is allocated on the heap.
var sink *[64]byte

func init() {
	sink = new([64]byte)
	lo, hi, ok := mappingOf(uintptr(unsafe.Pointer(sink)))
	if !ok {
		return
	}
	hi = min(hi, lo+maxPopulate)
	// Errors are of no consequence: the pages fault in as they would
	// have.
	syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, madvPopulateWrite)
}

// mappingOf finds the mapping that holds address p in /proc/self/maps,
// read with nothing but system calls and a stack buffer (this runs before
// most of the program is initialised, and allocating would move the heap
// under it).
func mappingOf(p uintptr) (lo, hi uintptr, ok bool) {
	fd, err := syscall.Open("/proc/self/maps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false
	}
	defer syscall.Close(fd)
	var buf [8 << 10]byte
	var line [128]byte // the start of a line: "lo-hi perms ..."
	n := 0
	for {
		got, err := syscall.Read(fd, buf[:])
		if got <= 0 || err != nil {
			return 0, 0, false
		}
		for _, c := range buf[:got] {
			if c != '\n' {
				if n < len(line) {
					line[n] = c
					n++
				}
				continue
			}
			if lo, hi, ok := parseRange(line[:n]); ok && lo <= p && p < hi {
				return lo, hi, true
			}
			n = 0
		}
	}
}

// parseRange reads the "lo-hi" address range (hexadecimal) at the start
// of a /proc/self/maps line.
func parseRange(line []byte) (lo, hi uintptr, ok bool) {
	lo, rest, ok := parseHex(line)
	if !ok || len(rest) == 0 || rest[0] != '-' {
		return 0, 0, false
	}
	if hi, _, ok = parseHex(rest[1:]); !ok {
		return 0, 0, false
	}
	return lo, hi, true
}

func parseHex(b []byte) (v uintptr, rest []byte, ok bool) {
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return v, b[i:], i > 0
		}
	}
	return v, b[i:], i > 0
}
