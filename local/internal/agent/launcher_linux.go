//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// runLauncher is the launcher (see agentproto.LauncherArg0): it starts an
// agent for every request on its control socket until the host closes
// it.
func runLauncher() int {
	ctl, err := takeControl("launcher")
	if err != nil {
		return 3
	}
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 3
	}
	// The agents are reaped as they exit: the host watches each through
	// its pidfd, which needs no zombie.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	go reapChildren(sigc)

	buf := make([]byte, agentproto.MaxLaunch)
	oob := make([]byte, unix.CmsgSpace(2*4))
	for {
		n, oobn, err := ctl.ReadMsg(buf, oob)
		if err != nil {
			return 0 // the host is gone, or closed its end
		}
		fds, err := agentproto.ParseRights(oob[:oobn])
		if err != nil || len(fds) != 2 {
			closeAll(fds)
			continue
		}
		var req agentproto.Launch
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			closeAll(fds)
			continue
		}
		go launch(&req, fds[0], fds[1], null)
	}
}

// launch starts one agent, with agentEnd as its control socket, and
// answers on reply.
func launch(req *agentproto.Launch, reply, agentEnd, null int) {
	defer unix.Close(agentEnd)
	c, err := newConn(reply, "launch")
	if err != nil {
		return
	}
	defer c.Close()
	pidfd := -1
	sys := req.SysProcAttr()
	sys.PidFD = &pidfd
	pid, err := syscall.ForkExec("/proc/self/exe", []string{agentproto.Arg0}, &syscall.ProcAttr{
		Env:   []string{agentproto.Env},
		Files: []uintptr{uintptr(null), uintptr(null), uintptr(null), uintptr(agentEnd)}, // agentproto.ControlFD
		Sys:   sys,
	})
	var res agentproto.Launched
	var oob []byte
	switch {
	case err != nil:
		res.Err = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	case pidfd < 0:
		// Without a pidfd the host could signal a recycled pid.
		unix.Kill(pid, unix.SIGKILL)
		res.Err = "no pidfd for the agent"
	default:
		res.Pid = pid
		oob = unix.UnixRights(pidfd)
		defer unix.Close(pidfd)
	}
	b, _ := json.Marshal(res)
	c.WriteMsg(b, oob)
}

// reapChildren reaps the agents that exited, at each SIGCHLD.
func reapChildren(sigc <-chan os.Signal) {
	for range sigc {
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
