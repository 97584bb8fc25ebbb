//go:build linux

package agent

// Terminals: a command on a pseudo-terminal of the sandbox's own devpts
// instance (root_linux.go mounts it), started like any command (the
// spawner thread, the command's cgroup), as the leader of a session of
// its own with the terminal as its controlling terminal. The master side
// goes to the host with the reply that the command started.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// maxTerminals bounds the pseudo-terminals of one sandbox (devpts' max=),
// those its code opens included: the kernel's pty limit is one for the
// whole machine (kernel.pty.max), so a sandbox must not take all of it.
const maxTerminals = 256

// openPTYDir opens the sandbox's /dev/pts, once its root is built and
// before any sandboxed code runs: the agent opens terminals through this
// descriptor, never by a path that sandboxed code could replace.
func (a *agent) openPTYDir() {
	if a.ptsErr != nil {
		return
	}
	fd, err := unix.Open("/dev/pts", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		a.ptsErr = fmt.Errorf("open /dev/pts: %w", err)
		return
	}
	a.pts = fd
}

// openPTY opens a new pseudo-terminal of rows×cols: the master and the
// slave side, both close-on-exec. In an isolated sandbox it is one of the
// sandbox's own devpts instance; without isolation, one of the host's.
func (a *agent) openPTY(rows, cols int) (master, slave *os.File, err error) {
	const flags = unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC
	var mfd int
	switch {
	case a.ptsErr != nil:
		return nil, nil, fmt.Errorf("this sandbox has no pseudo-terminals (%v): %w", a.ptsErr, errNoTerminals)
	case a.pts >= 0:
		mfd, err = unix.Openat(a.pts, "ptmx", flags|unix.O_NOFOLLOW, 0)
	default:
		mfd, err = unix.Open("/dev/ptmx", flags, 0)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open a pseudo-terminal: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	fail := func(what string, err error) (*os.File, *os.File, error) {
		master.Close()
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock the pseudo-terminal", err)
	}
	ws := &unix.Winsize{Row: uint16(rows), Col: uint16(cols)}
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, ws); err != nil {
		return fail("set the terminal's size", err)
	}
	// The slave side straight from the master (Linux 4.13): no path that
	// sandboxed code could have replaced is looked up.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, flags)
	if errno != 0 {
		if errno != unix.EINVAL && errno != unix.ENOTTY {
			return fail("open the terminal's slave side", errno)
		}
		// An older kernel: open it by number, in the same devpts.
		n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
		if err != nil {
			return fail("number of the pseudo-terminal", err)
		}
		var fd int
		if a.pts >= 0 {
			fd, err = unix.Openat(a.pts, strconv.Itoa(int(n)), flags|unix.O_NOFOLLOW, 0)
		} else {
			fd, err = unix.Open("/dev/pts/"+strconv.Itoa(int(n)), flags|unix.O_NOFOLLOW, 0)
		}
		if err != nil {
			return fail("open the terminal's slave side", err)
		}
		sfd = uintptr(fd)
	}
	return master, os.NewFile(sfd, "pts"), nil
}

// terminal starts a command on a new pseudo-terminal, as the leader of a
// session of its own whose controlling terminal it is, so that job
// control works and Ctrl-C reaches the foreground process group. It
// reports that it started (the reply carries the master side), then its
// exit code; then it keeps what the command left running on the terminal
// until the host sends a kill or hangs up, kills it all, and says Done.
func (a *agent) terminal(c *conn, r io.Reader, req *agentproto.Request, files []*os.File) {
	want := 0
	if req.Group {
		want = 3
	}
	if len(files) != want || len(req.Argv) == 0 || req.Rows <= 0 || req.Cols <= 0 || req.Rows > 0xffff || req.Cols > 0xffff {
		agentproto.WriteMsg(c, agentproto.Reply{Err: "malformed terminal request"})
		return
	}
	var group *GroupFiles
	if req.Group {
		group = GroupFilesFrom(files)
	}
	cmd, rep := a.resolveCommand(req)
	if rep != nil {
		agentproto.WriteMsg(c, rep)
		return
	}
	master, slave, err := a.openPTY(req.Rows, req.Cols)
	if err != nil {
		rep := errReply(err)
		rep.Unsupported = errors.Is(err, errNoTerminals)
		agentproto.WriteMsg(c, rep)
		return
	}
	defer master.Close() // the host has its own copy once it is sent

	// The terminal is the code's user's (user_linux.go).
	if err := a.ownTerminal(slave); err != nil {
		slave.Close()
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	fd := slave.Fd()
	pid, done, err := a.startCommand(cmd, group, []uintptr{fd, fd, fd}, &syscall.SysProcAttr{
		Setsid:  true,
		Setctty: true,
		Ctty:    0, // the child's descriptor 0, the terminal
	})
	// The command holds the slave side now: the host reads EIO (the end)
	// from the master once the command and all it started let go of it.
	slave.Close()
	if err != nil {
		agentproto.WriteMsg(c, startFailed(err))
		return
	}
	killer := newCommandKiller(pid, group)
	killer.session = true
	if err := agentproto.WriteMsgRights(c, agentproto.Reply{}, int(master.Fd())); err != nil { // started
		killer.kill()
		<-done
		return
	}
	master.Close()

	// The host's kill, or its hanging up, stops everything on the
	// terminal, while the command runs and after it exited.
	hangup := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			var m agentproto.Control
			err := agentproto.ReadMsg(r, &m)
			if err != nil || m.Kill {
				killer.kill()
				once.Do(func() { close(hangup) })
			}
			if err != nil {
				return
			}
		}
	}()
	code := <-done
	killer.leaderExited()
	if err := agentproto.WriteMsg(c, agentproto.Reply{Exit: &code}); err != nil {
		killer.kill()
		killer.finish()
		return
	}
	<-hangup
	killer.kill() // what the command left on the terminal (background jobs)
	killer.finish()
	agentproto.WriteMsg(c, agentproto.Reply{Done: true})
}

// errNoTerminals: the sandbox has no devpts instance to open terminals in.
var errNoTerminals = errors.New("no devpts instance")
