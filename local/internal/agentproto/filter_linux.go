//go:build linux

package agentproto

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// filterInsnSize is the size of the kernel's struct sock_filter.
const filterInsnSize = 8

// MaxFilterLen is the most instructions a filter may have (the kernel's
// BPF_MAXINSNS).
const MaxFilterLen = 4096

// EncodeFilter encodes a BPF program for Seccomp.Programs: the kernel's
// struct sock_filter array (code, jt, jf, k), in this machine's byte
// order, since the host and its agents run on the same machine.
func EncodeFilter(prog []unix.SockFilter) []byte {
	b := make([]byte, 0, len(prog)*filterInsnSize)
	for _, in := range prog {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

// DecodeFilter decodes what EncodeFilter encoded. It refuses an empty
// program, one longer than MaxFilterLen, and a partial instruction; the
// kernel checks the instructions themselves when the filter is installed.
func DecodeFilter(b []byte) ([]unix.SockFilter, error) {
	n := len(b) / filterInsnSize
	switch {
	case len(b)%filterInsnSize != 0:
		return nil, fmt.Errorf("filter of %d bytes is not whole instructions", len(b))
	case n == 0:
		return nil, fmt.Errorf("empty filter")
	case n > MaxFilterLen:
		return nil, fmt.Errorf("filter of %d instructions, over the kernel's %d", n, MaxFilterLen)
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		in := b[i*filterInsnSize:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(in),
			Jt:   in[2],
			Jf:   in[3],
			K:    binary.NativeEndian.Uint32(in[4:]),
		}
	}
	return prog, nil
}
