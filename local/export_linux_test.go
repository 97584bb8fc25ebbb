//go:build linux

package local

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SetHardening turns sandbox confinement and cgroup limits on or off, for
// the benchmark that measures what they cost. Not safe for concurrent use
// with Create.
func SetHardening(on bool) { hardening = on }

// Reserves reports how many sandboxes the provider holds ready: with the
// host's root, without a root (for any image), and with the root of the
// image the last image Create named.
func (p *Provider) Reserves() (host, bare, image int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hostReserve.spares), len(p.bareReserve.spares), len(p.imageReserve.spares)
}

// UseEmbeddedAgent chooses between the embedded agent program (the
// default) and this test binary re-executed as the agent.
func UseEmbeddedAgent(on bool) { noEmbeddedAgent.Store(!on) }

// SetEmbeddedAgent makes path stand for the embedded agent program until
// restore is called, which also forgets that the kernel refused one.
func SetEmbeddedAgent(path string) (restore func()) {
	testAgentProgram.Store(&path)
	return func() {
		testAgentProgram.Store(nil)
		embeddedRefused.Store(false)
	}
}

// AgentExe is where the agent process of sb (a sandbox of this
// package, from Provider.Create) runs its program from, as /proc shows it.
func AgentExe(sb any) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/exe", sb.(*sandbox).agent.Pid()))
}

// AgentProgram is the program the next sandbox's agent starts from.
func AgentProgram() string { return agentPath() }

// AgentPid is the process id of sb's agent.
func AgentPid(sb any) int { return sb.(*sandbox).agent.Pid() }

// UseLauncher sets when isolated agents are started by the launcher: from
// the first (1), never (-1), or after launcherAfter started directly (0,
// the default). It returns the previous setting.
func UseLauncher(mode int32) (previous int32) { return useLauncher.Swap(mode) }

// SetLaunchTimeout sets how long a start waits for the launcher's answer,
// and returns the previous setting.
func SetLaunchTimeout(d time.Duration) (previous time.Duration) {
	return time.Duration(launchTimeout.Swap(int64(d)))
}

// AfterLimit has every start of p's agents call f with the agent's pid
// once the agent is in its cgroup; f's error fails the start there. A nil
// f ends that. It is one hook for the whole process: tests that set it
// do not run in parallel.
func AfterLimit(p *Provider, f func(agent int) error) {
	if f == nil {
		testHookLimited.Store(nil)
		return
	}
	hook := func(q *Provider, agent int) error {
		if q != p {
			return nil
		}
		return f(agent)
	}
	testHookLimited.Store(&hook)
}

// SetSetupTimeout sets how long a start waits for its agent's setup, and
// returns the previous setting.
func SetSetupTimeout(d time.Duration) (previous time.Duration) {
	return time.Duration(setupTimeout.Swap(int64(d)))
}

// FillLauncherQueue sends the running launcher empty requests (which it
// drops) until its socket takes no more, and returns how many it took.
func FillLauncherQueue() (int, error) {
	l := &theLauncher
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := 0; ; n++ {
		err := unix.Sendmsg(l.ctl, []byte("{}"), nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// LauncherState is what a test can see of the launcher.
type LauncherState struct {
	Pid    int   // its process id; 0 where none runs
	FD     int   // this process's end of its control socket; -1 where none runs
	Users  int   // open providers, which hold it
	Failed error // why it could not be started, if it could not
	// Stalled: it did not answer a start in time, and is not used until
	// it has.
	Stalled bool
}

// Launcher returns the launcher's state. Its control socket (FD) is the
// one descriptor the launcher costs the process for its lifetime, which
// leak checks leave out.
func Launcher() LauncherState {
	l := &theLauncher
	l.mu.Lock()
	defer l.mu.Unlock()
	return LauncherState{Pid: l.pid, FD: l.ctl, Users: l.users, Failed: l.failed, Stalled: l.stalled}
}

// LaunchWith has the running launcher start an agent with attr (its
// control socket a socket nobody holds the other end of, so that an agent
// that does start exits at once) and returns what the launcher answered.
// For the launcher's failure paths.
func LaunchWith(attr *syscall.SysProcAttr) error {
	ours, end, err := unixPair(unix.SOCK_SEQPACKET)
	if err != nil {
		return err
	}
	ours.Close()
	defer end.Close()
	a, err := theLauncher.launch(agentPath(), attr, end)
	if a != nil {
		a.Kill()
		a.Wait()
	}
	return err
}
