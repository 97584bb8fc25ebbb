//go:build linux

package local

// Commands in cgroups of their own.
//
// A command's processes can leave its process tree: a double fork, then
// setsid, and they are reparented to the agent in a session and process
// group of their own, where neither parent links nor the process group
// find them. Cgroup membership does: a process cannot leave its cgroup
// without write access to another one's files, and sandboxed code has no
// cgroup file system at all. So every command gets a cgroup of its own, a
// child of the sandbox's (in the pids hierarchy on cgroup v1; a threaded
// child on v2, so that memory and the other domain limits stay the
// sandbox's), and killing a command kills everything in it.
//
// A forked process starts in its parent thread's cgroup, and a cgroup can
// take one thread at a time (v1's tasks file, v2's cgroup.threads in a
// threaded subtree). So the agent's spawner thread enters the command's
// cgroup just before it forks the command and goes back to the sandbox's
// right after. (v2's CLONE_INTO_CGROUP would do it in the fork itself, but
// it needs clone3, which the spawner's seccomp filter refuses for sandboxed
// code's sake.) The host makes each command's cgroup and opens its files,
// as root; the agent gets the open descriptors with the exec request. The
// kernel checks a migration against the credentials of whoever opened the
// file, so the spawner can move itself whatever its uid, and the agent can
// move nothing outside its own pid namespace, the only one it can name.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agent"
)

// cmdGroups makes, reuses and removes the per-command cgroups of one
// sandbox, in the host. A command's cgroup that is empty once the command
// has ended serves a later command; one that is not (something the command
// started lives on: a server in the background) is removed once it
// empties. That file system work is done by a goroutine of its own,
// between commands, so that an exec waits for none of it: Start takes a
// cgroup ready beforehand and sends copies of its descriptors.
type cmdGroups struct {
	dir   string   // the sandbox's cgroup in the hierarchy used
	tasks string   // the file that lists and moves threads
	v2    bool     // cgroup v2 (threaded children), else v1
	leave *os.File // dir's tasks file, for writing: a copy goes with each command
	next  atomic.Uint64

	wake    chan struct{} // the worker has something to do
	stopped chan struct{} // the worker is gone

	mu        sync.Mutex
	closed    bool
	free      []*cmdGroup // empty, ready for a command
	ended     []*cmdGroup // of commands that have ended, to reuse if empty
	lingering []string    // in use by what ended commands started: removed once empty
}

// spareCmdGroups is how many empty cgroups a sandbox keeps at most.
const spareCmdGroups = 2

// newCmdGroups prepares per-command cgroups below dir, the sandbox's
// cgroup (in the v1 pids hierarchy, or on v2). It makes the first one at
// once, so that a host where they cannot work is known before the sandbox
// is used.
func newCmdGroups(dir string, v2 bool) (*cmdGroups, error) {
	g := &cmdGroups{dir: dir, tasks: "tasks", v2: v2, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	if v2 {
		g.tasks = "cgroup.threads"
	}
	var err error
	if g.leave, err = os.OpenFile(filepath.Join(dir, g.tasks), os.O_WRONLY, 0); err != nil {
		return nil, err
	}
	first, err := g.create()
	if err != nil {
		g.leave.Close()
		return nil, err
	}
	g.free = []*cmdGroup{first}
	go g.work()
	return g, nil
}

// cmdGroup is one command's cgroup, in the host.
type cmdGroup struct {
	g   *cmdGroups
	dir string
	// enter is the cgroup's tasks file open for writing (the calling
	// thread moves in), list an O_PATH descriptor of it (opened afresh
	// to read the members). The host keeps them while the cgroup serves
	// commands.
	enter, list *os.File
	// send are copies for the agent, with one of the sandbox's tasks file
	// (to move back): sent with the exec request, which closes them.
	send []*os.File
}

// commandCgroups turns per-command cgroups on. Only the benchmark that
// measures their cost turns it off (export_cmdgroup_linux_test.go).
var commandCgroups = true

// command returns the cgroup for a command about to start; nil (and no
// error) where the sandbox has no per-command cgroups.
func (c *cgroupLimits) command() (*cmdGroup, error) {
	if c == nil || c.groups == nil || !commandCgroups {
		return nil, nil
	}
	cg, err := c.groups.take()
	if err != nil {
		return nil, fmt.Errorf("local: the command's cgroup: %w", err)
	}
	return cg, nil
}

// take returns a cgroup for a command: one made or freed beforehand, or,
// when commands start faster than that, a new one.
func (g *cmdGroups) take() (*cmdGroup, error) {
	g.mu.Lock()
	if g.closed { // the sandbox is gone
		g.mu.Unlock()
		return nil, os.ErrClosed
	}
	var cg *cmdGroup
	if n := len(g.free); n > 0 {
		cg, g.free = g.free[n-1], g.free[:n-1]
	}
	g.mu.Unlock()
	g.kick() // have another ready
	if cg == nil {
		var err error
		if cg, err = g.create(); err != nil {
			return nil, err
		}
	}
	// The copies are made under the lock: close (a Destroy racing this
	// start) closes g.leave, and then the command has nowhere to go.
	cg.send = cg.send[:0]
	g.mu.Lock()
	closed := g.closed
	var err error
	for _, f := range []*os.File{cg.enter, cg.list, g.leave} {
		if closed {
			break
		}
		var fd int
		if fd, err = unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			break
		}
		cg.send = append(cg.send, os.NewFile(uintptr(fd), f.Name()))
	}
	g.mu.Unlock()
	if closed || err != nil {
		for _, f := range cg.send {
			f.Close()
		}
		cg.send = cg.send[:0]
		cg.done() // after close, done leaves the directory to the sandbox's removal
		if closed {
			// Made after close took its inventory: remove it here
			// (it is empty: nothing was started in it).
			os.Remove(cg.dir)
			return nil, os.ErrClosed
		}
		return nil, err
	}
	return cg, nil
}

func (g *cmdGroups) create() (*cmdGroup, error) {
	dir := filepath.Join(g.dir, "cmd-"+strconv.FormatUint(g.next.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	cg := &cmdGroup{g: g, dir: dir}
	err := func() (err error) {
		if g.v2 {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.type"), []byte("threaded"), 0); err != nil {
				return fmt.Errorf("make %s threaded: %w", dir, err)
			}
		}
		if cg.enter, err = os.OpenFile(filepath.Join(dir, g.tasks), os.O_WRONLY, 0); err != nil {
			return err
		}
		cg.list, err = os.OpenFile(filepath.Join(dir, g.tasks), unix.O_PATH, 0)
		return err
	}()
	if err != nil {
		cg.closeFiles()
		os.Remove(dir)
		return nil, err
	}
	return cg, nil
}

// files are the descriptors to send with the exec request, in the order
// the agent takes them (agent.GroupFilesFrom); sending closes them.
func (cg *cmdGroup) files() []*os.File { return cg.send }

func (cg *cmdGroup) closeFiles() {
	for _, f := range []*os.File{cg.enter, cg.list} {
		if f != nil {
			f.Close()
		}
	}
}

// reuse hands the cgroup of a command that has ended (its exit reported)
// back: a later command gets it if it is empty, else it is removed once
// it is.
func (cg *cmdGroup) reuse() {
	if cg == nil {
		return
	}
	g := cg.g
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cg.closeFiles()
		return
	}
	g.ended = append(g.ended, cg)
	g.mu.Unlock()
	g.kick()
}

// done gives up the cgroup of a command whose start failed: never reused
// (the agent may yet be starting the command in it), removed once empty.
func (cg *cmdGroup) done() {
	if cg == nil {
		return
	}
	cg.closeFiles()
	g := cg.g
	g.mu.Lock()
	if !g.closed {
		g.lingering = append(g.lingering, cg.dir)
	}
	g.mu.Unlock()
	g.kick()
}

func (g *cmdGroups) kick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// work puts ended commands' cgroups that are empty back in service,
// removes the others once they empty, and keeps one ready, until close.
func (g *cmdGroups) work() {
	defer close(g.stopped)
	for range g.wake {
		g.mu.Lock()
		ended, lingering := g.ended, g.lingering
		g.ended, g.lingering = nil, nil
		g.mu.Unlock()
		var free, extra []*cmdGroup
		for _, cg := range ended {
			if tids, err := agent.ReadTids(cg.list); err == nil && len(tids) == 0 {
				free = append(free, cg)
			} else {
				cg.closeFiles()
				lingering = append(lingering, cg.dir)
			}
		}
		var kept []string
		for _, dir := range lingering {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				kept = append(kept, dir) // busy: tried again at the next wake
			}
		}
		g.mu.Lock()
		g.free = append(g.free, free...)
		if len(g.free) > spareCmdGroups {
			extra = append(extra, g.free[spareCmdGroups:]...)
			g.free = g.free[:spareCmdGroups]
		}
		g.lingering = append(g.lingering, kept...)
		need := len(g.free) == 0
		g.mu.Unlock()
		for _, cg := range extra {
			cg.closeFiles()
			os.Remove(cg.dir)
		}
		if need {
			if cg, err := g.create(); err == nil {
				g.mu.Lock()
				g.free = append(g.free, cg)
				g.mu.Unlock()
			}
		}
	}
}

// close stops the worker and closes what the host holds open; the
// cgroups themselves go with the sandbox's (cgroupLimits.remove).
func (g *cmdGroups) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.wake)
	g.mu.Unlock()
	<-g.stopped
	for _, cg := range append(g.free, g.ended...) {
		cg.closeFiles()
	}
	g.free, g.ended = nil, nil
	g.leave.Close()
}

// commandsLimit says, for Info, how a sandbox's commands are killed.
func commandsLimit(c *cgroupLimits, why error) string {
	if c != nil && c.groups != nil {
		h := "cgroup v2, threaded"
		if !c.groups.v2 {
			h = "cgroup v1 pids"
		}
		return fmt.Sprintf("commands: each in a cgroup of its own (%s); a timeout or kill ends every process the command started, those that left its process tree included", h)
	}
	if c != nil {
		why = c.groupsErr
	}
	return fmt.Sprintf("commands: killed as a process tree found in /proc (no per-command cgroups: %v); a process that leaves the tree (a double fork and setsid) outlives a timeout or kill of its command, though not the sandbox", why)
}

// removeCgroupTree removes an empty cgroup and the empty cgroups below it.
func removeCgroupTree(dir string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	return os.Remove(dir)
}
