//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// confineThread locks down the calling OS thread, the agent's spawner,
// from which every sandboxed process is forked and so inherits exactly
// these credentials. Capabilities, securebits, no_new_privs, a Landlock
// domain and seccomp filters are all per-thread attributes, so the
// agent's other threads keep what they need to manage the sandbox while
// nothing it starts gets any of it. The caller must hold the thread
// (runtime.LockOSThread) for good. It returns what it enforced, for Info;
// what the kernel lacks (Landlock, seccomp) is reported, not fatal.
func confineThread(sc *agentproto.Seccomp) (enforced []string, err error) {
	// Capabilities: root of the sandbox's user namespace keeps none and
	// cannot regain them by exec (securebits), so sandboxed code cannot
	// remount, mknod or use any privilege of its namespace.
	if err := unix.Prctl(unix.PR_SET_SECUREBITS,
		secbitNoRoot|secbitNoRootLocked|secbitNoSetuidFixup|secbitNoSetuidFixupLocked|
			secbitKeepCapsLocked|secbitNoCapAmbientRaise|secbitNoCapAmbientRaiseLocked, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("securebits: %w", err)
	}
	for c := 0; c <= LastCap(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != syscall.EINVAL {
			return nil, fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("no_new_privs: %w", err)
	}
	enforced = append(enforced, "no_new_privs")

	// Landlock (best effort): no device nodes anywhere, no signals to and
	// no abstract unix sockets of processes outside the sandbox (which
	// matters when the sandbox shares the host's network namespace). File
	// read-only-ness comes from the mounts: the root stays writable so that
	// programs can create /app and the like, as on cloud sandboxes.
	fd, flags, err := landlock.Config{
		HandledAccessFS: llsys.AccessFSMakeChar | llsys.AccessFSMakeBlock,
		Scoped:          llsys.ScopeAbstractUnixSocket | llsys.ScopeSignal,
	}.BestEffort().NewRulesetFD()
	if err != nil {
		return nil, fmt.Errorf("landlock: %w", err)
	}
	if fd >= 0 {
		err := llsys.LandlockRestrictSelf(fd, flags)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("landlock: %w", err)
		}
		abi, _ := llsys.LandlockGetABIVersion()
		enforced = append(enforced, fmt.Sprintf("landlock ABI v%d (no device nodes; signals and abstract sockets scoped to the sandbox)", abi))
	}

	// seccomp, for this thread and what it forks: the filters the host
	// assembled (package seccompfilter), nil where the kernel has none.
	if sc != nil {
		if len(sc.Programs) == 0 {
			return nil, errors.New("seccomp: no filter to install")
		}
		for i, b := range sc.Programs {
			prog, err := agentproto.DecodeFilter(b)
			if err == nil {
				err = loadFilter(prog)
			}
			if err != nil {
				return nil, fmt.Errorf("seccomp filter %d: %w", i, err)
			}
		}
		enforced = append(enforced, "seccomp ("+sc.Summary+")")
	}

	// Last, empty the effective, permitted and inheritable sets.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("drop capabilities: %w", err)
	}
	enforced = append(enforced, "capabilities: none")
	return enforced, nil
}

// becomeSandboxRoot makes the calling OS thread, the agent's spawner, uid
// and gid 0 of the sandbox's user namespace, which commands then run as,
// where the agent runs as a uid of its own. Only this thread: credentials
// are per thread in the kernel, and the system calls are made raw so that
// they are not applied to every thread as Go's syscall.Setuid does.
// (Setting the uid in each forked child instead would not do: Go forks
// with CLONE_VM, and a child's credential change before exec marks the
// agent's shared memory map non-dumpable, which hands the agent's /proc
// entries to the sandbox's root.)
func becomeSandboxRoot() error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, 0, 0); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	return nil
}

const (
	secbitNoRoot                  = 1 << 0
	secbitNoRootLocked            = 1 << 1
	secbitNoSetuidFixup           = 1 << 2
	secbitNoSetuidFixupLocked     = 1 << 3
	secbitKeepCapsLocked          = 1 << 5
	secbitNoCapAmbientRaise       = 1 << 6
	secbitNoCapAmbientRaiseLocked = 1 << 7
)

// LastCap returns the highest capability number this kernel knows (40
// where it cannot tell). The spawner drops every capability up to it; the
// host gives the agent all of them, in the sandbox's user namespace only.
// The file is read once per process: the loops above ask for every
// capability, and the kernel's answer cannot change.
func LastCap() int { return lastCap() }

var lastCap = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return 40
})

// loadFilter installs a seccomp filter program on the calling thread,
// which has no_new_privs.
func loadFilter(filters []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filters)
	if e != 0 {
		return e
	}
	return nil
}
