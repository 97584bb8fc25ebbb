//go:build linux

package seccompfilter

import (
	"fmt"
	"runtime"
	"sync"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
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

// Programs returns the filters for this machine's architecture, in the
// order they are to be installed, or nil where the kernel has no seccomp.
// They are assembled once per process; the result is shared and must not
// be modified.
func Programs() (*agentproto.Seccomp, error) { return programs() }

var programs = sync.OnceValues(func() (*agentproto.Seccomp, error) {
	if !seccomp.Supported() {
		return nil, nil
	}
	deny, err := denyList()
	if err != nil {
		return nil, err
	}
	sc := &agentproto.Seccomp{
		Summary: fmt.Sprintf("%d syscalls denied, namespace clone flags denied, terminal injection and line discipline changes denied, socket families but unix/inet/inet6/netlink denied, foreign ABIs denied", len(deniedSyscalls)),
	}
	for _, prog := range [][]bpf.Instruction{deny, argFilter(), archFilter()} {
		if prog == nil {
			continue
		}
		raw, err := bpf.Assemble(prog)
		if err != nil {
			return nil, err
		}
		filter := make([]unix.SockFilter, len(raw))
		for i, in := range raw {
			filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
		}
		sc.Programs = append(sc.Programs, agentproto.EncodeFilter(filter))
	}
	return sc, nil
})

// denyList assembles deniedSyscalls and clone's namespace flags into a
// filter that answers EPERM, and clone3 ENOSYS.
func denyList() ([]bpf.Instruction, error) {
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
	policy := seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}
	return policy.Assemble()
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

// argFilter checks the arguments that the deny-list cannot: socket's
// and socketpair's address family, and ioctl's request. Both are C ints,
// of which the kernel reads the low 32 bits only, so the filter compares
// those alone (a 64-bit comparison would let 0x1_0000_5412 through as
// TIOCSTI). The words read are the low halves on little-endian machines,
// the only ones nativeAuditArch admits.
func argFilter() []bpf.Instruction {
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
	return prog
}

// archFilter refuses system calls made through any ABI but the native
// one (on amd64: the i386 int 0x80 entry), whose numbers the deny-list
// above does not cover.
func archFilter() []bpf.Instruction {
	native, ok := nativeAuditArch[runtime.GOARCH]
	if !ok {
		return nil
	}
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: native, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	}
}

var nativeAuditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}
