//go:build linux

package local

// The ids a sandbox's user namespace maps, and who the agent starts as.

import (
	"errors"
	"math/rand/v2"
	"os"
	"syscall"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// hostID picks the unprivileged host uid (and gid) a sandbox's code runs
// as, and reports whether the agent gets one of its own (the next one). As
// root we can map any id: each sandbox gets its own block of three, far
// from real users, so sandboxes cannot signal or share files with each
// other or anyone, and sandboxed code cannot touch its agent's process
// attributes (oom_score_adj, rlimits), which the kernel lets any process
// of the same uid change. The block is id (the sandbox's root), id+1 (the
// agent) and id+2 (an image's USER, where it has one); blocks start at
// multiples of three, so two sandboxes' blocks never overlap. Without
// root the kernel lets us map only our own uid, which the agent and the
// code then share.
func hostID() (uid, gid int, separate bool) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), false
	}
	id := 1_000_000_002 + 3*rand.IntN(333_333_332)
	return id, id, true
}

// agentUID is the agent's uid (and gid) inside the sandbox's user
// namespace when it has a host uid of its own, unless an image's USER is
// that id (see agentID); sandboxed code is uid 0 (root) there.
const agentUID = 1

// agentID is the agent's uid and gid inside the sandbox: agentUID, or
// where an image's user or group has that id (Debian's "daemon" is 1),
// the next that neither has.
func agentID(u *agentproto.User) int {
	id := agentUID
	for u != nil && (id == u.UID || id == u.GID) {
		id++
	}
	return id
}

// mapIDs sets the user namespace's mappings and the agent's credentials
// in attr, and cfg.Separate where the agent has a uid of its own. Inside,
// 0 (the sandbox's root, owner of its files) maps to the host id hostID
// picked, the agent to the next, and cfg.User's uid and gid, where set,
// to the one after. cfg.User needs root (imageUserOf refuses it
// otherwise).
func mapIDs(attr *syscall.SysProcAttr, cfg *agentproto.Config) error {
	uid, gid, separate := hostID()
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	attr.GidMappingsEnableSetgroups = os.Geteuid() == 0
	// Without an explicit credential a root parent would leave the
	// child's host uid at 0; this makes it uid 0 inside = uid above
	// outside.
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	if !separate {
		if cfg.User != nil {
			return errors.New("local: an image's USER other than root needs the provider to run as root")
		}
		return nil
	}
	// Inside: 0 is the sandbox's code (or the owner of its files, where
	// an image's USER runs the code), the agent an id of its own, which
	// keeps its capabilities (of this namespace) through the exec.
	a := agentID(cfg.User)
	if a == agentUID {
		// 0 and 1 to id and id+1: one line each.
		attr.UidMappings[0].Size = 2
		attr.GidMappings[0].Size = 2
	} else {
		attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: a, HostID: uid + 1, Size: 1})
		attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: a, HostID: gid + 1, Size: 1})
	}
	if u := cfg.User; u != nil {
		if u.UID != 0 {
			attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: u.UID, HostID: uid + 2, Size: 1})
		}
		if u.GID != 0 {
			attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: u.GID, HostID: gid + 2, Size: 1})
		}
	}
	attr.Credential = &syscall.Credential{Uid: uint32(a), Gid: uint32(a), NoSetGroups: true}
	attr.AmbientCaps = allCaps()
	cfg.Separate = true
	return nil
}

// launchAgent is launchAgentAs for a sandbox whose code runs as its root
// (no image, an image whose USER is root, or an image not named yet).
func launchAgent(p *Provider, network bool, gpus []string, forImage bool) (*sandbox, error) {
	return launchAgentAs(p, network, gpus, forImage, nil)
}
