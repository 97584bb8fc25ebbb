//go:build linux

package seccompfilter

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// The assembled programs, installed on a thread as the agent installs
// them on its spawner, refuse what the sandbox's processes must not do
// and let the rest through.
func TestProgramsRefuse(t *testing.T) {
	sc, err := Programs()
	if err != nil {
		t.Fatal(err)
	}
	if sc == nil {
		t.Skip("this kernel has no seccomp: nothing to assemble")
	}
	want := 2 // the deny-list and the argument checks
	if _, ok := nativeAuditArch[runtime.GOARCH]; ok {
		want++ // and the foreign-ABI check
	}
	if len(sc.Programs) != want {
		t.Fatalf("%d programs, want %d", len(sc.Programs), want)
	}
	if again, _ := Programs(); again != sc {
		t.Error("Programs assembled the filters again")
	}

	type result struct {
		name string
		got  error
		want error
	}
	results := make(chan []result, 1)
	go func() {
		// The thread keeps the filters: it exits locked, and the runtime
		// discards it instead of running other goroutines on it.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			results <- []result{{"no_new_privs", err, nil}}
			return
		}
		for i, b := range sc.Programs {
			prog, err := agentproto.DecodeFilter(b)
			if err == nil {
				fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
				if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); e != 0 {
					err = e
				}
				runtime.KeepAlive(prog)
			}
			if err != nil {
				results <- []result{{fmt.Sprint("installing program ", i), err, nil}}
				return
			}
		}
		var rs []result
		call := func(name string, want error, trap uintptr, args ...uintptr) {
			a := append(args, 0, 0, 0)
			r, _, e := unix.Syscall(trap, a[0], a[1], a[2])
			var got error
			if e != 0 {
				got = e
			} else if trap == unix.SYS_SOCKET {
				unix.Close(int(r))
			}
			rs = append(rs, result{name, got, want})
		}
		call("unshare(CLONE_NEWUTS)", unix.EPERM, unix.SYS_UNSHARE, unix.CLONE_NEWUTS)
		// Flags the kernel would refuse anyway (CLONE_THREAD without
		// CLONE_SIGHAND): without the filter the answer is EINVAL, and
		// nothing is ever forked.
		call("clone(CLONE_NEWNET|CLONE_THREAD)", unix.EPERM, unix.SYS_CLONE, unix.CLONE_NEWNET|unix.CLONE_THREAD)
		call("clone3", unix.ENOSYS, unix.SYS_CLONE3, 0, 0)
		call("socket(AF_VSOCK)", unix.EAFNOSUPPORT, unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM)
		call("socket(AF_UNIX)", nil, unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM)
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			rs = append(rs, result{"pipe", err, nil})
		} else {
			call("ioctl(TIOCSTI)", unix.EPERM, unix.SYS_IOCTL, uintptr(p[0]), unix.TIOCSTI)
			call("ioctl(TIOCSTI with high bits)", unix.EPERM, unix.SYS_IOCTL, uintptr(p[0]), 1<<32|unix.TIOCSTI)
			call("ioctl(TCGETS) on a pipe", unix.ENOTTY, unix.SYS_IOCTL, uintptr(p[0]), unix.TCGETS)
			unix.Close(p[0])
			unix.Close(p[1])
		}
		results <- rs
	}()
	for _, r := range <-results {
		if !errors.Is(r.got, r.want) && r.got != r.want {
			t.Errorf("%s: got %v, want %v", r.name, r.got, r.want)
		}
	}
}
