//go:build linux

package agent

// The agent's side of commands in cgroups of their own: the spawner
// thread enters a command's cgroup to fork it, and a kill empties the
// cgroup. The host's side, and why, is in package local's
// cmdgroup_linux.go.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// GroupFiles are a command's cgroup descriptors as the agent receives
// them with an exec request (made by the host's cmdGroup): the file that
// takes the spawner thread in, the one that lists the command's tasks,
// and the sandbox's, that takes the thread back. The exported names here
// serve the agent's own code and package local's tests of commands in
// cgroups, which play both sides.
type GroupFiles struct{ Enter, List, Leave *os.File }

// GroupFilesFrom takes the three descriptors at the end of an exec
// request's files.
func GroupFilesFrom(files []*os.File) *GroupFiles {
	f := files[len(files)-3:]
	return &GroupFiles{Enter: f[0], List: f[1], Leave: f[2]}
}

// ownCgroupNamespace gives the calling thread (the spawner) a cgroup
// namespace rooted at its cgroups: the sandbox's, which the host has put
// the agent in before it starts any command. Commands inherit it, so
// /proc/self/cgroup shows them "/" and their command's cgroup below it,
// never the host's cgroup paths or the owner's pid. It runs before the
// thread is confined: seccomp refuses unshare after.
func ownCgroupNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	return nil
}

// ForkIn forks and execs a command in its cgroup (none: where it is). It
// runs on the spawner thread.
func ForkIn(g *GroupFiles, path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	if g == nil {
		return syscall.ForkExec(path, argv, attr)
	}
	// "0" is the writing thread.
	if _, err := unix.Write(int(g.Enter.Fd()), []byte("0")); err != nil {
		return 0, fmt.Errorf("enter the command's cgroup: %w", err)
	}
	pid, err := syscall.ForkExec(path, argv, attr)
	// Should going back fail, the next command moves the thread on, and a
	// kill never signals the agent's own threads.
	unix.Write(int(g.Leave.Fd()), []byte("0"))
	return pid, err
}

// commandKiller kills one command: everything in its cgroup, or where it
// has none, its process tree (a terminal's: its session).
type commandKiller struct {
	pid   int
	group *GroupFiles
	// session: the command leads a session of its own (a terminal), which
	// is what is killed once the leader has exited.
	session bool
	exited  bool // the leader has exited (and been reaped)

	mu   sync.Mutex
	over bool
}

func newCommandKiller(pid int, group *GroupFiles) *commandKiller {
	return &commandKiller{pid: pid, group: group}
}

// kill kills the command and returns once everything in its cgroup is
// gone. After finish, it does nothing.
func (k *commandKiller) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.over {
		return
	}
	if k.group != nil && KillGroup(k.group.List) == nil {
		return
	}
	if k.exited {
		// The leader's pid may name another process by now; its session
		// id cannot while the session has members.
		if k.session {
			KillSession(k.pid)
		}
		return
	}
	KillTree(k.pid)
}

// leaderExited tells the killer that the command's first process has
// exited and been reaped: its pid no longer names it.
func (k *commandKiller) leaderExited() {
	k.mu.Lock()
	k.exited = true
	k.mu.Unlock()
}

// finish waits for a kill under way, and makes later ones do nothing:
// the command is over and its cgroup may go.
func (k *commandKiller) finish() {
	k.mu.Lock()
	k.over = true
	k.mu.Unlock()
}

// killGroupPatience bounds how long KillGroup waits for a cgroup to
// empty: SIGKILLed processes exit at once unless stuck in the kernel.
const killGroupPatience = 10 * time.Second

// KillGroup SIGKILLs every process in a cgroup, given its tasks file, and
// again those that appear meanwhile (forked before the signal arrived; a
// process with a SIGKILL pending cannot fork), until it is empty.
func KillGroup(list *os.File) error {
	own := OwnThreads()
	delay := 50 * time.Microsecond
	for start := time.Now(); ; {
		tids, err := ReadTids(list)
		if err != nil {
			return err
		}
		n := 0
		for _, tid := range tids {
			if own[tid] {
				continue
			}
			unix.Kill(tid, unix.SIGKILL) // a thread's id signals its whole process
			n++
		}
		if n == 0 {
			return nil
		}
		if time.Since(start) > killGroupPatience {
			return fmt.Errorf("%d threads still in the command's cgroup", n)
		}
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Millisecond)
	}
}

// ReadTids reads a cgroup's tasks file afresh. Reading it again through
// the same open file would not do: cgroup v1 keeps the list it made for
// an open file (for a second after the last read), so the reader would
// keep seeing processes already gone. Opening the descriptor again, by
// /proc/self/fd, gives a fresh one.
func ReadTids(f *os.File) ([]int, error) {
	g, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, err
	}
	defer g.Close()
	b, err := io.ReadAll(g)
	if err != nil {
		return nil, err
	}
	var tids []int
	for _, field := range bytes.Fields(b) {
		// 0 stands for a thread outside the reader's pid namespace: never
		// one to signal (kill(0) is the caller's own process group).
		if tid, err := strconv.Atoi(string(field)); err == nil && tid > 0 {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// OwnThreads lists the calling process's threads (KillGroup spares them).
func OwnThreads() map[int]bool {
	own := map[int]bool{}
	ents, _ := os.ReadDir("/proc/self/task")
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			own[tid] = true
		}
	}
	return own
}
