//go:build linux

package agent

// Who sandboxed code runs as: the sandbox's root (uid 0 of its user
// namespace), or an image's USER (agentproto.Config.User), which the
// namespace maps besides root and the agent. The spawner thread takes the
// user's ids on before it is confined, so every command, terminal and
// code context forks from a thread that already is that user, and what
// the agent makes for the code (the work directory, files written from
// outside, a terminal) is the user's.

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// becomeSandboxUser makes the calling OS thread, the spawner, u (nil: the
// sandbox's root), in u's group alone: the supplementary groups the agent
// inherited from the host process (host gids, shown as nogroup inside)
// go too. Only this thread, with raw system calls, as becomeSandboxRoot
// explains. It runs while the thread still has the agent's capabilities
// (from the agent's own uid to another non-zero one, the kernel keeps
// them), which confineThread then drops for good.
func becomeSandboxUser(u *agentproto.User) error {
	uid, gid := 0, 0
	if u != nil {
		uid, gid = u.UID, u.GID
	}
	groups := []uint32{uint32(gid)}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if u == nil {
		return becomeSandboxRoot()
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", uid, e)
	}
	return nil
}

// codeOwner is the uid and gid that own what the agent creates for
// sandboxed code: -1 (the agent itself) where both run as one uid.
func codeOwner(cfg *agentproto.Config) (uid, gid int) {
	switch {
	case !cfg.Separate:
		return -1, -1
	case cfg.User != nil:
		return cfg.User.UID, cfg.User.GID
	}
	return 0, 0
}

// openSandboxRoot opens the sandbox's root for paths from outside, with
// what the agent creates through it owned by the code's user, and gives
// an image's user its work directory (which the root's setup made the
// sandbox root's): the user's files go there, as on a cloud sandbox.
func openSandboxRoot(cfg *agentproto.Config) (*fsRoot, error) {
	uid, gid := codeOwner(cfg)
	if cfg.User != nil && cfg.Separate && cfg.Isolate {
		if err := giveOwned(cfg.User.Owned); err != nil {
			return nil, err
		}
		// No sandboxed code has run yet: nothing can have replaced the
		// directory the setup made, and Lchown follows no link anyway.
		if err := os.Lchown(cfg.WorkDir, uid, gid); err != nil {
			return nil, fmt.Errorf("give the image's user %s: %w", cfg.WorkDir, err)
		}
	}
	r, err := openRoot("/", uid)
	if err != nil {
		return nil, err
	}
	r.group = gid
	return r, nil
}

// ownTerminal gives a terminal the agent opened for sandboxed code to
// the code's user, as a login gives a user its tty: the devpts instance
// makes new terminals the sandbox root's.
func (a *agent) ownTerminal(slave *os.File) error {
	if u := a.cfg.User; u != nil && a.cfg.Separate {
		if err := unix.Fchown(int(slave.Fd()), u.UID, u.GID); err != nil {
			return fmt.Errorf("give the terminal to the image's user: %w", err)
		}
	}
	return nil
}

// giveOwned gives an image's files to the user (or group) they belong
// to, in the sandbox's root, before any sandboxed code runs (the host
// listed them: agentproto.User.Owned). A path is resolved in the root
// without following any link and without crossing a mount (/dev, /proc):
// one that does not resolve so (hidden by a higher layer's link or
// opaque directory) is not the image's file of that name, and is left.
func giveOwned(owned []agentproto.Owned) error {
	if len(owned) == 0 {
		return nil
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for _, o := range owned {
		fd, err := unix.Openat2(root, o.Path, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			continue
		}
		// On the overlay, this copies the file up into the sandbox's
		// disk: the layers stay as they are.
		err = unix.Fchownat(fd, "", o.UID, o.GID, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("give the image's user /%s: %w", o.Path, err)
		}
	}
	return nil
}
