//go:build linux

package agent

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are refused (EPERM) to every sandboxed process. Sandboxed code never needs them, and
// each is either a way out of the sandbox's namespaces or kernel attack
// surface that has produced privilege escalations:
//
//   - mount, umount2, pivot_root, chroot, fsopen, fsmount, fsconfig, fspick,
//     open_tree, move_mount, mount_setattr: change what the sandbox sees;
//   - unshare, setns: new namespaces (user namespaces unlock much of the
//     kernel to unprivileged code); clone with namespace flags is refused
//     below, and clone3, whose flags cannot be inspected, answers ENOSYS
//     so libc falls back to clone;
//   - ptrace, process_vm_readv, process_vm_writev, kcmp: reading or steering
//     other processes (the agent is one);
//   - kexec_load, kexec_file_load, init_module, finit_module, delete_module,
//     reboot, swapon, swapoff, acct, quotactl, syslog, vhangup, iopl,
//     ioperm: host administration;
//   - bpf, perf_event_open, userfaultfd, io_uring_setup, io_uring_enter,
//     io_uring_register, keyctl, add_key, request_key: large attack surface
//     behind many kernel CVEs, unused by ordinary programs;
//   - clock_settime, clock_adjtime, settimeofday, adjtimex: the host's clock;
//   - open_by_handle_at, name_to_handle_at: file handles bypass the
//     sandbox's root (the "shocker" escape);
//   - ioctl(TIOCSTI, TIOCLINUX): typing into a terminal (the sandbox's
//     own terminals are in a devpts instance of its own, so there is no
//     other to reach, but a program must not type into its own terminal
//     as the person at it either); ioctl(TIOCSETD): changing a terminal's
//     line discipline, the way into n_gsm and n_hdlc, whose races gave
//     local root exploits (CVE-2017-2636, CVE-2023-6546).
var deniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig",
	"fspick", "open_tree", "move_mount", "mount_setattr",
	"unshare", "setns",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup", "iopl", "ioperm",
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "keyctl", "add_key", "request_key",
	"clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
	"open_by_handle_at", "name_to_handle_at",
}

// confineThread locks down the calling OS thread, the agent's spawner,
// from which every sandboxed process is forked and so inherits exactly
// these credentials. Capabilities, securebits, no_new_privs, a Landlock
// domain and seccomp filters are all per-thread attributes, so the
// agent's other threads keep what they need to manage the sandbox while
// nothing it starts gets any of it. The caller must hold the thread
// (runtime.LockOSThread) for good. It returns what it enforced, for Info;
// what the kernel lacks (Landlock, seccomp) is reported, not fatal.
func confineThread() (enforced []string, err error) {
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

	// seccomp: a deny-list, for this thread and what it forks.
	if seccomp.Supported() {
		if err := loadSeccomp(); err != nil {
			return nil, fmt.Errorf("seccomp: %w", err)
		}
		enforced = append(enforced, fmt.Sprintf("seccomp (%d syscalls denied, namespace clone flags denied, terminal injection and line discipline changes denied, socket families but unix/inet/inet6/netlink denied, foreign ABIs denied)", len(deniedSyscalls)))
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

func loadSeccomp() error {
	errno := seccomp.ActionErrno // EPERM
	groups := []seccomp.SyscallGroup{{Action: errno, Names: deniedSyscalls}}
	var conds []seccomp.NameWithConditions
	for _, bit := range []uint64{
		unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
		unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME,
	} {
		conds = append(conds, seccomp.NameWithConditions{Name: "clone", Conditions: seccomp.ArgumentConditions{
			{Argument: 0, Operation: seccomp.BitsSet, Value: bit},
		}})
	}
	groups = append(groups, seccomp.SyscallGroup{Action: errno, NamesWithCondtions: conds})
	// clone3 passes its flags in memory, out of a filter's reach: answer
	// ENOSYS and libc falls back to clone, which is checked above.
	groups = append(groups, seccomp.SyscallGroup{Action: seccomp.ActionErrno | 38, Names: []string{"clone3"}})

	filter := seccomp.Filter{
		NoNewPrivs: true,
		Policy:     seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		return err
	}
	if err := loadArgFilter(); err != nil {
		return err
	}
	return loadArchFilter()
}

// socketFamilies are the address families sandboxed code may open
// sockets of: local sockets, IP (in the sandbox's own network namespace
// unless it shares the host's) and netlink (which libc's getaddrinfo and
// tools like ip need, and which is per network namespace). Every other
// family is refused with EAFNOSUPPORT, the answer of a kernel without it:
// some are not namespaced at all (AF_VSOCK reaches the VM's host and
// other guests), the rest is kernel attack surface ordinary programs never
// use (AF_ALG, AF_PACKET, AF_KEY, AF_TIPC, AF_RDS, ...).
var socketFamilies = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// deniedIoctls type into a terminal or change its line discipline. What
// shells, editors and REPLs do with their terminal (TCGETS/TCSETS*,
// TIOCGWINSZ/TIOCSWINSZ, TIOCGPGRP/TIOCSPGRP, TIOCSCTTY, TIOCGPTN, FIONREAD)
// stays allowed.
var deniedIoctls = []uint32{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCSETD}

// loadArgFilter checks the arguments that the deny-list cannot: socket's
// and socketpair's address family, and ioctl's request. Both are C ints,
// of which the kernel reads the low 32 bits only, so the filter compares
// those alone (a 64-bit comparison would let 0x1_0000_5412 through as
// TIOCSTI). The words read are the low halves on little-endian machines,
// the only ones nativeAuditArch admits.
func loadArgFilter() error {
	const (
		nrOff   = 0
		argOff  = 16 // seccomp_data.args[0]
		argSize = 8
	)
	d, n := uint8(len(deniedIoctls)), uint8(len(socketFamilies))
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: nrOff, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_IOCTL, SkipTrue: d + 3},
		bpf.LoadAbsolute{Off: argOff + 1*argSize, Size: 4},
	}
	for i := range d {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: deniedIoctls[i], SkipTrue: d - i})
	}
	prog = append(prog,
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		// Not ioctl: the accumulator still holds the syscall number.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_SOCKETPAIR, SkipTrue: n + 2},
		bpf.LoadAbsolute{Off: argOff, Size: 4},
	)
	for i := range n {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: socketFamilies[i], SkipTrue: n - i})
	}
	prog = append(prog,
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	)
	return loadBPF(prog)
}

// loadArchFilter refuses system calls made through any ABI but the native
// one (on amd64: the i386 int 0x80 entry), whose numbers the deny-list
// above does not cover.
func loadArchFilter() error {
	native, ok := nativeAuditArch[runtime.GOARCH]
	if !ok {
		return nil
	}
	return loadBPF([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: native, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	})
}

// loadBPF installs a seccomp filter program on the calling thread.
func loadBPF(insns []bpf.Instruction) error {
	prog, err := bpf.Assemble(insns)
	if err != nil {
		return err
	}
	filters := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filters[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filters)
	if e != 0 {
		return fmt.Errorf("load filter: %w", e)
	}
	return nil
}

var nativeAuditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}
