//go:build linux

package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// agentProcess is a sandbox's running agent: started by this process
// (os/exec) or by the launcher.
type agentProcess interface {
	// Pid is the agent's process id.
	Pid() int
	// Kill sends the agent SIGKILL; once it has exited, it does nothing.
	Kill() error
	// Wait waits until the agent has exited. It is called once.
	Wait() error
}

// childAgent is an agent this process started itself.
type childAgent struct{ *exec.Cmd }

func (a childAgent) Pid() int    { return a.Process.Pid }
func (a childAgent) Kill() error { return a.Process.Kill() }
func (a childAgent) Wait() error { return a.Cmd.Wait() }

// launchedAgent is an agent the launcher started: this process holds its
// pidfd, which names it for good (a pid could be another process's once
// the launcher has reaped it).
type launchedAgent struct {
	pid int

	mu    sync.Mutex
	pidfd int // -1 once the agent has exited
}

func (a *launchedAgent) Pid() int { return a.pid }

func (a *launchedAgent) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pidfd < 0 {
		return nil
	}
	err := unix.PidfdSendSignal(a.pidfd, unix.SIGKILL, nil, 0)
	if err == unix.ESRCH {
		return nil // exited, not yet seen by Wait
	}
	return err
}

// Wait waits for the pidfd to become readable, which it does when the
// process exits, and closes it.
func (a *launchedAgent) Wait() error {
	a.mu.Lock()
	fd := a.pidfd
	a.mu.Unlock()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != unix.EINTR {
			break
		}
	}
	a.mu.Lock()
	unix.Close(a.pidfd)
	a.pidfd = -1
	a.mu.Unlock()
	return nil
}

// launcher starts this process's isolated agents once it runs (see
// agentproto.LauncherArg0). Forking this process into a new user
// namespace copies its page tables and makes every page it then writes
// fault once; the launcher is a few megabytes, so a start costs the same
// whatever this process's size (a Start from a process with 0, 20 and
// 100 MB of heap took 3.9, 5.2 and 9.3 ms here).
type launcher struct {
	// starts counts isolated starts; the launcher is started in the
	// background by the one after launcherAfter, so that a process that
	// starts one sandbox (a CLI command) does not start a launcher too.
	starts atomic.Int64

	mu      sync.Mutex
	users   int    // open providers: the last one's Close stops the launcher
	ctl     int    // its control socket; -1 until it runs, and once it died
	pid     int    // its process id while it runs
	program string // the agent program it runs, or could not start
	started bool   // started, or starting; false again once it died
	gen     int    // counts the launchers started
	// stalled: it did not answer a start within launchTimeout; starts go
	// directly until it answers that one (awaitLate).
	stalled bool
	failed  error // program could not be started: no more tries
}

// launchTimeout bounds the wait for the launcher's answer, in
// nanoseconds (10 s; tests shorten it).
var launchTimeout atomic.Int64

func init() { launchTimeout.Store(int64(10 * time.Second)) }

// launcherAfter is how many isolated agents are started directly before
// the launcher is started.
const launcherAfter = 1

// useLauncher: 1 to start the launcher with the first isolated agent, -1
// never to use it (tests), 0 after launcherAfter.
var useLauncher atomic.Int32

var theLauncher = launcher{ctl: -1}

// errNoLauncher: the launcher does not run (yet); start the agent
// directly.
var errNoLauncher = errors.New("local: the launcher is not running")

// launch has the launcher start the agent program with attr and agentEnd
// as its control socket. It returns errNoLauncher where the launcher is
// not running for program, is stalled (it did not answer an earlier
// start in time), has no room for the request, or cannot start what attr
// asks for; and it starts the launcher once enough agents have been
// started without it.
func (l *launcher) launch(program string, attr *syscall.SysProcAttr, agentEnd *os.File) (agentProcess, error) {
	mode := useLauncher.Load()
	req, ok := agentproto.NewLaunch(attr)
	if mode < 0 || !ok {
		return nil, errNoLauncher
	}
	n := l.starts.Add(1)
	l.mu.Lock()
	if l.ctl < 0 || l.program != program {
		if l.program != program {
			l.failed = nil // another program (tests) may start
		}
		if !l.started && l.failed == nil && l.users > 0 && (mode > 0 || n > launcherAfter) {
			l.started = true
			l.program = program
			ready := make(chan struct{})
			go l.run(program, ready)
			if mode > 0 {
				// Tests: the launcher from the first agent on.
				l.mu.Unlock()
				<-ready
				l.mu.Lock()
			}
		}
	}
	if l.ctl < 0 || l.program != program {
		l.mu.Unlock()
		return nil, errNoLauncher
	}
	if l.stalled {
		l.mu.Unlock()
		return nil, errNoLauncher
	}
	// Sent under the lock: run closes the control socket under it too.
	gen := l.gen
	reply, err := l.send(&req, agentEnd)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a, err := receiveLaunched(reply)
	if !errors.Is(err, errLaunchTimeout) {
		unix.Close(reply)
		return a, err
	}
	// A launcher that does not answer in time (stopped, overloaded) is
	// asked nothing more until it answers this request: starts go
	// directly meanwhile, rather than each waiting launchTimeout. It is
	// not killed: the sandboxes it started would die with it. This start
	// fails; should the launcher start its agent later, awaitLate kills
	// that agent.
	l.mu.Lock()
	if l.gen == gen {
		l.stalled = true
	}
	l.mu.Unlock()
	go l.awaitLate(gen, reply)
	return nil, fmt.Errorf("the launcher did not answer within %v; sandboxes start without it until it does", time.Duration(launchTimeout.Load()))
}

// errLaunchTimeout: the launcher did not answer within launchTimeout.
var errLaunchTimeout = errors.New("local: the launcher did not answer")

// awaitLate waits, as long as it takes, for the late answer of launcher
// gen on reply (which it closes). Once the launcher has answered, or
// dropped the request without an answer (one it could not read), it is
// used again; the agent it started for nobody is killed. (Should it have
// died instead, run has started over already.)
func (l *launcher) awaitLate(gen, reply int) {
	defer unix.Close(reply)
	unix.SetsockoptTimeval(reply, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{}) // no timeout
	a, err := receiveLaunched(reply)
	for errors.Is(err, errLaunchTimeout) { // should the timeout have stayed
		a, err = receiveLaunched(reply)
	}
	if a != nil {
		a.Kill()
		a.Wait()
	}
	l.mu.Lock()
	if l.gen == gen {
		l.stalled = false
	}
	l.mu.Unlock()
}

// run starts the launcher and waits for it to exit. It holds its OS
// thread meanwhile: the launcher's PR_SET_PDEATHSIG fires when the thread
// that started it ends, and the runtime ends a thread whose goroutine
// exits locked to it; this one stays until the launcher is gone. (It is
// started with syscall.ForkExec and reaped by pid, rather than by
// os/exec, which would hold a pidfd of it: the control socket is the one
// descriptor the launcher costs this process.)
func (l *launcher) run(program string, ready chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.fail(err, ready)
		return
	}
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		l.fail(err, ready)
		return
	}
	pid, err := syscall.ForkExec(program, []string{agentproto.LauncherArg0}, &syscall.ProcAttr{
		Env:   []string{agentproto.Env},
		Files: []uintptr{uintptr(null), uintptr(null), uintptr(null), uintptr(fds[1])}, // agentproto.ControlFD
		Sys:   &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL},
	})
	unix.Close(null)
	unix.Close(fds[1])
	if err != nil {
		unix.Close(fds[0])
		l.fail(err, ready)
		return
	}
	l.mu.Lock()
	l.ctl, l.pid = fds[0], pid
	l.gen++
	l.mu.Unlock()
	close(ready)
	for {
		if _, err := unix.Wait4(pid, nil, 0, nil); err != unix.EINTR {
			break
		}
	}
	// Dead (killed, out of memory): agents start directly until the
	// next start starts another.
	l.mu.Lock()
	unix.Close(l.ctl)
	l.ctl, l.pid, l.started, l.stalled = -1, 0, false, false
	l.mu.Unlock()
}

// holdLauncher and releaseLauncher count open providers: the launcher
// runs while any is open (it is started by the one after launcherAfter
// of their isolated agents). With the last one closed, it is stopped, so
// that a program that is done with sandboxes keeps no process for them.
func holdLauncher() {
	theLauncher.mu.Lock()
	theLauncher.users++
	theLauncher.mu.Unlock()
}

func releaseLauncher() {
	l := &theLauncher
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users--
	if l.users == 0 && l.ctl >= 0 {
		// The launcher exits at the end of its control socket; run
		// closes ours once it has.
		unix.Shutdown(l.ctl, unix.SHUT_RDWR)
	}
}

func (l *launcher) fail(err error, ready chan<- struct{}) {
	l.mu.Lock()
	l.failed, l.started = err, false
	l.mu.Unlock()
	close(ready)
}

// send sends the launcher req with agentEnd, and returns the socket its
// answer comes on. l.mu is held.
func (l *launcher) send(req *agentproto.Launch, agentEnd *os.File) (reply int, err error) {
	b, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("local: socketpair: %w", err)
	}
	ours, theirs := fds[0], fds[1]
	defer unix.Close(theirs)
	// A launcher that stopped answering fails this start rather than
	// hanging it.
	tv := unix.NsecToTimeval(launchTimeout.Load())
	err = unix.SetsockoptTimeval(ours, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err == nil {
		// Not waiting for room: a launcher that reads nothing (stopped)
		// would hold this send, and l.mu with it, for good once its
		// socket is full. Full or dead, the caller starts the agent
		// itself.
		err = unix.Sendmsg(l.ctl, b, unix.UnixRights(theirs, int(agentEnd.Fd())), nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		runtime.KeepAlive(agentEnd)
		if err != nil {
			err = errNoLauncher
		}
	}
	if err != nil {
		unix.Close(ours)
		return -1, err
	}
	return ours, nil
}

// receiveLaunched reads the launcher's answer on reply.
func receiveLaunched(reply int) (agentProcess, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(reply, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EAGAIN {
		return nil, errLaunchTimeout
	}
	if err != nil || n == 0 {
		// It died before it answered: it had not started the agent, or
		// the agent died with it.
		return nil, errNoLauncher
	}
	rights, err := agentproto.ParseRights(oob[:oobn])
	var res agentproto.Launched
	if err == nil {
		err = json.Unmarshal(buf[:n], &res)
	}
	if err == nil && res.Err == "" && (len(rights) != 1 || res.Pid <= 0) {
		err = fmt.Errorf("the launcher answered pid %d with %d descriptors", res.Pid, len(rights))
	}
	if err != nil || res.Err != "" {
		closeFDs(rights)
		if err == nil {
			err = errors.New(res.Err)
			if res.Errno != 0 {
				err = syscall.Errno(res.Errno)
			}
		}
		return nil, fmt.Errorf("local: the launcher: %w", err)
	}
	return &launchedAgent{pid: res.Pid, pidfd: rights[0]}, nil
}
