//go:build linux

package agentproto

import (
	"reflect"
	"syscall"
)

// The launcher is the agent's program started once by a host process, to
// start that process's sandbox agents for it. A Go program cannot fork
// itself cheaply into a new user namespace (os/exec forks the whole
// process rather than vforking, so that it can write the child's uid
// map in between), and the copy costs in proportion to the host's
// memory: a small, long-lived launcher pays that for a process of a few
// megabytes instead.
//
// The host starts it like an agent, but with argv[0] LauncherArg0 and the
// launcher's end of its control socket (SOCK_SEQPACKET) as ControlFD.
// Each request is one Launch datagram with two descriptors: the end of a
// fresh socket pair the launcher answers on (one Launched datagram, with
// the agent's pidfd), and the agent's end of its own control socket,
// which becomes the agent's ControlFD. The launcher exits when the host
// closes its control socket, and dies with the host (PR_SET_PDEATHSIG);
// the agents it started die with it.
const LauncherArg0 = "compute-sandbox-launcher"

// MaxLaunch bounds a Launch datagram.
const MaxLaunch = 1 << 14

// Launch is what the launcher starts an agent with: the fields of
// syscall.SysProcAttr the host sets for an isolated sandbox (NewLaunch,
// SysProcAttr). The agent always gets a session of its own, SIGKILL when
// the launcher dies, and /dev/null as its standard input, output and
// error.
type Launch struct {
	Cloneflags  uintptr                `json:"cloneflags"`
	UidMappings []syscall.SysProcIDMap `json:"uidMappings"`
	GidMappings []syscall.SysProcIDMap `json:"gidMappings"`
	// Setgroups is SysProcAttr.GidMappingsEnableSetgroups.
	Setgroups   bool                `json:"setgroups,omitempty"`
	Credential  *syscall.Credential `json:"credential,omitempty"`
	AmbientCaps []uintptr           `json:"ambientCaps,omitempty"`
}

// NewLaunch is the Launch that starts an agent with attr, and ok where
// the launcher can: where attr sets nothing but what a Launch carries and
// the launcher always sets.
func NewLaunch(attr *syscall.SysProcAttr) (l Launch, ok bool) {
	l = Launch{
		Cloneflags:  attr.Cloneflags,
		UidMappings: attr.UidMappings,
		GidMappings: attr.GidMappings,
		Setgroups:   attr.GidMappingsEnableSetgroups,
		Credential:  attr.Credential,
		AmbientCaps: attr.AmbientCaps,
	}
	return l, reflect.DeepEqual(l.SysProcAttr(), attr)
}

// SysProcAttr is what the launcher starts the agent with.
func (l *Launch) SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setsid:                     true,
		Pdeathsig:                  syscall.SIGKILL,
		Cloneflags:                 l.Cloneflags,
		UidMappings:                l.UidMappings,
		GidMappings:                l.GidMappings,
		GidMappingsEnableSetgroups: l.Setgroups,
		Credential:                 l.Credential,
		AmbientCaps:                l.AmbientCaps,
	}
}

// Launched is the launcher's answer: the agent's process id (with its
// pidfd as the message's descriptor), or why it could not be started
// (Errno, where a system call refused, for the host to tell a refusal of
// the program from other failures).
type Launched struct {
	Pid   int    `json:"pid,omitempty"`
	Err   string `json:"err,omitempty"`
	Errno int    `json:"errno,omitempty"`
}
