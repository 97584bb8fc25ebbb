//go:build linux

package agent

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// Filters that cannot be installed stop the spawner with a reason: a
// sandbox never starts with less than the host asked for.
func TestConfineThreadRefusesBadFilters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("confineThread sets securebits first, which takes root (CAP_SETPCAP); run as root to test it")
	}
	invalid := agentproto.EncodeFilter([]unix.SockFilter{{Code: 0xffff}}) // no such BPF instruction
	for _, tc := range []struct {
		name string
		sc   *agentproto.Seccomp
		want string
	}{
		{"no programs", &agentproto.Seccomp{Summary: "nothing"}, "no filter to install"},
		{"partial instruction", &agentproto.Seccomp{Programs: [][]byte{make([]byte, 5)}}, "seccomp filter 0: filter of 5 bytes"},
		{"invalid instruction", &agentproto.Seccomp{Programs: [][]byte{invalid}}, "seccomp filter 0: invalid argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				// confineThread changes this thread for good: it exits
				// locked, and the runtime discards it.
				runtime.LockOSThread()
				_, err := confineThread(tc.sc)
				errc <- err
			}()
			if err := <-errc; err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("confineThread = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
