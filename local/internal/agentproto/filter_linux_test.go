//go:build linux

package agentproto

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFilterRoundTrip(t *testing.T) {
	prog := []unix.SockFilter{
		{Code: 0x20, K: 4},
		{Code: 0x15, Jt: 1, Jf: 0, K: 0xc000003e},
		{Code: 0x06, K: 0x00050026},
		{Code: 0x06, K: 0x7fff0000},
	}
	b := EncodeFilter(prog)
	if len(b) != 8*len(prog) {
		t.Fatalf("encoded %d instructions in %d bytes, want %d", len(prog), len(b), 8*len(prog))
	}
	got, err := DecodeFilter(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, prog) {
		t.Fatalf("decoded %+v, want %+v", got, prog)
	}
}

// The agent installs what it decodes: what cannot be a filter is refused
// with a reason, before the kernel sees it.
func TestDecodeFilterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"partial instruction", make([]byte, 12), "not whole instructions"},
		{"too long", make([]byte, 8*(MaxFilterLen+1)), "over the kernel's 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, err := DecodeFilter(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeFilter = %d instructions, %v; want an error saying %q", len(prog), err, tc.want)
			}
		})
	}
	if _, err := DecodeFilter(make([]byte, 8*MaxFilterLen)); err != nil {
		t.Fatalf("a filter of the kernel's maximum length: %v", err)
	}
}
