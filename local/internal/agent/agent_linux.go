//go:build linux

package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// The agent is this program re-executed by the host (package local) with
// argv[0] set to agentproto.Arg0 and agentproto.Env as its environment;
// the init below turns it into the agent before main runs. With argv[0]
// set to agentproto.LauncherArg0 instead, it becomes the launcher that
// starts agents for the host (launcher_linux.go). In any other process it
// does nothing.
func init() {
	if len(os.Args) != 1 || len(os.Environ()) != 1 || os.Environ()[0] != agentproto.Env {
		return
	}
	switch os.Args[0] {
	case agentproto.Arg0:
		os.Exit(runAgent())
	case agentproto.LauncherArg0:
		os.Exit(runLauncher()) // launcher_linux.go
	}
}

// agent is a sandbox's agent: the process that sets the sandbox up and
// then runs every command and file operation the host asks for, inside it.
type agent struct {
	cfg agentproto.Config
	env []string // base environment, sorted

	mu      sync.Mutex
	waiters map[int]chan int // pid -> exit code, for commands being run
	spawn   chan spawnRequest
	ctl     *conn   // the control socket, also for proxied connections
	root    *fsRoot // resolves paths from outside inside the sandbox
	// pts is the sandbox's /dev/pts (O_PATH), where terminals are opened;
	// -1 without isolation (the host's /dev/ptmx). ptsErr says why an
	// isolated sandbox has none.
	pts    int
	ptsErr error
	// confined and spawnErr are what starting the spawner reported, where
	// it was started ahead of the root (an image sandbox started ahead
	// of demand).
	confined []string
	spawnErr error
}

// takeControl closes every descriptor inherited from the host but stdio
// and the control socket, and returns the control socket, close-on-exec.
func takeControl(name string) (*conn, error) {
	// Descriptors the host process held without close-on-exec (a shell's
	// "9<dir", socket activation, a parent that leaks them) came along
	// through exec. They are the host's, and the agent resolves paths for
	// sandboxed code: close them before anything else.
	if err := closeInherited(); err != nil {
		return nil, err
	}
	// A close-on-exec copy of the control socket; the inherited one must
	// go, or every process started from here would hold it.
	fd, err := unix.FcntlInt(agentproto.ControlFD, unix.F_DUPFD_CLOEXEC, agentproto.ControlFD+1)
	unix.Close(agentproto.ControlFD)
	if err != nil {
		return nil, err
	}
	return newConn(fd, name)
}

func runAgent() int {
	uc, err := takeControl("control")
	if err != nil {
		return 3
	}
	a := &agent{waiters: map[int]chan int{}, ctl: uc, pts: -1}
	buf := make([]byte, agentproto.MaxConfig)
	layers, err := readConfig(uc, buf, &a.cfg)
	if err != nil {
		return 3
	}
	var pre *preparedRoot
	if img := a.cfg.Image; err == nil && a.cfg.Isolate && img != nil && img.Later {
		// Started ahead of demand: prepare what needs no image, then
		// wait for the image.
		if pre, err = prepareRoot(&a.cfg); err == nil {
			// The spawner too: it forks nothing before the root is
			// built, and the pivot moves its root with the agent's.
			a.confined, a.spawnErr = a.startSpawner(a.cfg.Isolate && a.cfg.Confine)
			var later agentproto.Config
			if layers, err = readConfig(uc, buf, &later); err != nil {
				return 3
			}
			if later.Image == nil {
				err = errors.New("the second configuration names no image")
			} else {
				a.cfg.Image, a.cfg.Env = later.Image, later.Env
			}
		}
	}
	var enforced []string
	if err == nil {
		enforced, err = a.setup(pre, layers)
	}
	closeAll(layers)
	if err == nil && a.cfg.Separate {
		// Keep the agent's /proc entries its own: those of a process that
		// is not dumpable (as credential changes during setup leave it)
		// belong to its namespace's root, the sandbox's code.
		err = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	}
	if err != nil {
		b, _ := json.Marshal(agentproto.Reply{Err: err.Error()})
		uc.Write(b)
		return 1
	}
	rep := agentproto.Reply{Done: true, Enforced: enforced}
	if a.cfg.Init != nil {
		// A sandbox started for a Create: its settings came along.
		if err := a.init(a.cfg.Init); err != nil {
			rep.InitErr = err.Error()
		}
	}
	b, _ := json.Marshal(rep)
	if err := sendReady(uc, b); err != nil {
		return 1
	}
	a.serve(uc)
	return 0
}

// closeInherited closes every descriptor the agent inherited from the
// host but its stdio and control socket. Inherited ones are exactly those
// without close-on-exec: any other would not have survived the exec, and
// everything the Go runtime opens since is close-on-exec.
func closeInherited() error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd <= agentproto.ControlFD {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// readConfig reads a Config from the control socket, with the
// descriptors that came with it (an image root's layers).
func readConfig(uc *conn, buf []byte, cfg *agentproto.Config) ([]int, error) {
	oob := make([]byte, unix.CmsgSpace(4*agentproto.MaxImageLayers))
	n, oobn, err := uc.ReadMsg(buf, oob)
	if err != nil {
		return nil, err
	}
	fds, err := agentproto.ParseRights(oob[:oobn])
	if err != nil {
		closeAll(fds)
		return nil, err
	}
	if err := json.Unmarshal(buf[:n], cfg); err != nil {
		closeAll(fds)
		return nil, err
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// setup builds the sandbox (layers are an image root's layers, see
// agentproto.ImageRoot) and starts the spawner.
func (a *agent) setup(pre *preparedRoot, layers []int) (enforced []string, err error) {
	cfg := &a.cfg
	// Take over reaping before anything is started: the agent is the
	// sandbox's pid 1, so orphans are ours to reap too.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	go a.reap(sigc)

	// The spawner confines its own thread while this one builds the
	// root: the two are independent (credentials, capabilities,
	// Landlock and seccomp are per thread; the pivot moves the spawner's
	// root with the agent's, as for a sandbox started ahead of an image),
	// and the spawner forks nothing before the agent serves requests.
	var spawnerReady func() ([]string, error)
	if a.spawn == nil {
		spawnerReady = a.startSpawnerAsync(cfg.Isolate && cfg.Confine)
	}

	if cfg.Isolate {
		if pre == nil {
			if pre, err = prepareRoot(cfg); err != nil {
				return nil, err
			}
		}
		if err := finishRoot(cfg, pre, layers); err != nil {
			return nil, err
		}
		// While the host's tree is being detached (pre.detached), only
		// what names no path.
		if cfg.Hostname != "" {
			if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
				return nil, fmt.Errorf("sethostname: %w", err)
			}
		}
		if !cfg.Network {
			if err := loopbackUp(); err != nil {
				return nil, fmt.Errorf("bring up loopback: %w", err)
			}
		}
		if err := pre.waitDetached(); err != nil {
			return nil, err
		}
		a.ptsErr = pre.ptsErr
		a.openPTYDir()
		if a.ptsErr != nil {
			enforced = append(enforced, fmt.Sprintf("terminals: none (%v)", a.ptsErr))
		} else {
			enforced = append(enforced, fmt.Sprintf("terminals: a devpts instance of the sandbox's own, at most %d pseudo-terminals", maxTerminals))
		}
	} else {
		// Unisolated: at least make orphans of our commands ours.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	if cfg.Dir == "" {
		cfg.Dir = cfg.WorkDir
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if err := os.Chdir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	for _, l := range []struct {
		res int
		v   uint64
	}{
		{unix.RLIMIT_NPROC, cfg.Limits.Procs},
		{unix.RLIMIT_NOFILE, cfg.Limits.Files},
		{unix.RLIMIT_FSIZE, cfg.Limits.FileSize},
		{unix.RLIMIT_AS, cfg.Limits.Memory},
		{unix.RLIMIT_CORE, 0},
	} {
		if l.v == 0 && l.res != unix.RLIMIT_CORE {
			continue
		}
		v := l.v
		// Raising a hard limit takes a privilege of the host's: where the
		// owner's own hard limit is lower, that is the limit.
		var cur unix.Rlimit
		if err := unix.Getrlimit(l.res, &cur); err == nil && cur.Max < v {
			v = cur.Max
			if l.res == unix.RLIMIT_NOFILE {
				enforced = append(enforced, fmt.Sprintf("open files %d per process (the owner's own hard limit, below the %d asked for)", v, l.v))
			}
		}
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return nil, fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	// What the agent creates belongs to the sandbox's code: its root,
	// or an image's user (user_linux.go).
	if a.root, err = openSandboxRoot(cfg); err != nil {
		return nil, err
	}

	for k, v := range cfg.Env {
		a.env = append(a.env, k+"="+v)
	}
	sort.Strings(a.env)
	confined, err := a.confined, a.spawnErr
	if spawnerReady != nil {
		confined, err = spawnerReady()
	}
	return append(enforced, confined...), err
}

// spawnRequest asks the spawner thread to fork and exec a command.
type spawnRequest struct {
	path  string
	argv  []string
	attr  *syscall.ProcAttr
	group *GroupFiles // the command's own cgroup, or nil (cmdgroup_linux.go)
	reply chan spawnResult
}

type spawnResult struct {
	pid int
	err error
}

// startSpawner starts the one goroutine, locked to its own OS thread, that
// forks every sandboxed process. With confine, that thread is confined
// first (confineThread) and children inherit exactly its credentials. The
// goroutine never unlocks its thread, so the Go runtime never hands the
// confined thread to other goroutines (and creates new threads from an
// unconfined template thread).
func (a *agent) startSpawner(confine bool) ([]string, error) {
	return a.startSpawnerAsync(confine)()
}

// startSpawnerAsync is startSpawner that does not wait: the function it
// returns waits until the spawner is ready (or failed) and says what it
// enforced.
func (a *agent) startSpawnerAsync(confine bool) func() ([]string, error) {
	// What confineThread reads from /proc is read now, before the root
	// changes under the spawner's feet.
	LastCap()
	a.spawn = make(chan spawnRequest)
	type ready struct {
		enforced []string
		err      error
	}
	readyc := make(chan ready, 1)
	go func() {
		runtime.LockOSThread()
		var r ready
		if a.cfg.Isolate {
			r.err = ownCgroupNamespace()
		}
		if a.cfg.Separate && r.err == nil {
			r.err = becomeSandboxUser(a.cfg.User) // user_linux.go
		}
		if confine && r.err == nil {
			r.enforced, r.err = confineThread(a.cfg.Seccomp)
		}
		readyc <- r
		if r.err != nil {
			return // exits locked: the runtime discards the thread
		}
		for req := range a.spawn {
			pid, err := ForkIn(req.group, req.path, req.argv, req.attr)
			req.reply <- spawnResult{pid, err}
		}
	}()
	return func() ([]string, error) {
		r := <-readyc
		return r.enforced, r.err
	}
}

// serve receives operations until the host goes away; then the agent
// exits, and the kernel kills everything left in the sandbox.
func (a *agent) serve(ctl *conn) {
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(8*4))
	for {
		_, oobn, err := ctl.ReadMsg(buf, oob)
		if err != nil {
			return
		}
		fds, err := agentproto.ParseRights(oob[:oobn])
		if err != nil || len(fds) == 0 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			continue
		}
		go a.handle(fds)
	}
}

// handle runs one operation. fds[0] is the operation's connection; the
// rest depend on the operation.
func (a *agent) handle(fds []int) {
	c, err := newConn(fds[0], "op")
	if err != nil {
		closeAll(fds[1:])
		return
	}
	defer c.Close()
	extra := make([]*os.File, len(fds)-1)
	for i, fd := range fds[1:] {
		extra[i] = os.NewFile(uintptr(fd), "fd"+strconv.Itoa(i+1))
	}
	defer func() {
		for _, f := range extra {
			f.Close()
		}
	}()
	r := bufio.NewReader(c)
	var req agentproto.Request
	if err := agentproto.ReadMsg(r, &req); err != nil {
		return
	}
	switch req.Op {
	case agentproto.OpInit:
		agentproto.WriteMsg(c, errReply(a.init(&req)))
	case agentproto.OpPing:
		agentproto.WriteMsg(c, agentproto.Reply{Done: true})
	case agentproto.OpExec:
		a.exec(c, r, &req, extra)
	case agentproto.OpTerminal:
		a.terminal(c, r, &req, extra)
	case agentproto.OpOpen:
		if len(extra) == 1 {
			a.open(c, a.abs(req.Path), extra[0])
		}
	case agentproto.OpWrite:
		if len(extra) == 1 {
			a.write(c, r, a.abs(req.Path), extra[0])
		}
	case agentproto.OpMkdir:
		agentproto.WriteMsg(c, errReply(a.root.mkdirAll(a.abs(req.Path))))
	case agentproto.OpReadDir:
		list, err := a.root.readDir(a.abs(req.Path))
		rep := errReply(err)
		rep.Files = list
		agentproto.WriteMsg(c, rep)
	case agentproto.OpStat:
		st, err := a.root.stat(a.abs(req.Path))
		rep := errReply(err)
		if err == nil {
			rep.Files = []agentproto.FileStat{st}
		}
		agentproto.WriteMsg(c, rep)
	case agentproto.OpRemove:
		agentproto.WriteMsg(c, errReply(a.root.removeAll(a.abs(req.Path))))
	default:
		agentproto.WriteMsg(c, agentproto.Reply{Err: "unknown operation " + strconv.Quote(req.Op)})
	}
}

func errReply(err error) agentproto.Reply {
	if err == nil {
		return agentproto.Reply{Done: true}
	}
	rep := agentproto.Reply{Err: err.Error()}
	// The host rebuilds the *fs.PathError with its own op and name: send
	// only the reason.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		rep.Err = pe.Err.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		rep.Errno = int(errno)
	}
	return rep
}

// abs makes a path from outside absolute: relative ones are in the
// sandbox's working directory.
func (a *agent) abs(name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	a.mu.Lock()
	dir := a.cfg.Dir
	a.mu.Unlock()
	return path.Join(dir, name)
}

// init binds a Create's environment and working directory (the agent may
// have been started ahead of the Create).
func (a *agent) init(req *agentproto.Request) error {
	dir := req.Dir
	if dir == "" {
		dir = a.cfg.WorkDir
	}
	dir = a.abs(dir)
	if err := a.root.mkdirAll(dir); err != nil {
		return err
	}
	dir, err := a.root.resolveDir(dir)
	if err != nil {
		return err
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	if req.Proxy {
		if err := a.listenProxy(); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.cfg.Dir = dir
	a.env = mergeEnv(a.env, req.Env)
	sort.Strings(a.env)
	a.mu.Unlock()
	return nil
}

// exec starts a command with the host's pipes as its stdio, reports that
// it started, then its exit code; a kill message or the host hanging up kills
// the command's whole process tree.
func (a *agent) exec(c *conn, r io.Reader, req *agentproto.Request, files []*os.File) {
	want := 2
	if req.Stdin {
		want = 3
	}
	if req.Group {
		want += 3
	}
	if len(files) != want || len(req.Argv) == 0 {
		agentproto.WriteMsg(c, agentproto.Reply{Err: "malformed exec request"})
		return
	}
	var group *GroupFiles
	if req.Group {
		group = GroupFilesFrom(files)
	}
	stdout, stderr := files[0], files[1]
	var stdin *os.File
	if req.Stdin {
		stdin = files[2]
	} else {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			agentproto.WriteMsg(c, errReply(err))
			return
		}
		defer devnull.Close()
		stdin = devnull
	}
	cmd, rep := a.resolveCommand(req)
	if rep != nil {
		agentproto.WriteMsg(c, rep)
		return
	}
	pid, done, err := a.startCommand(cmd, group, []uintptr{stdin.Fd(), stdout.Fd(), stderr.Fd()}, &syscall.SysProcAttr{Setpgid: true})
	// The command holds the pipes now; our copies must go so the host sees
	// EOF when the command (and whatever inherited them) is done.
	stdout.Close()
	stderr.Close()
	if req.Stdin {
		stdin.Close()
	}
	if err != nil {
		agentproto.WriteMsg(c, startFailed(err))
		return
	}
	// Killing kills everything in the command's cgroup, or where it has
	// none, its process tree.
	killer := newCommandKiller(pid, group)
	if err := agentproto.WriteMsg(c, agentproto.Reply{}); err != nil { // started
		killer.kill()
		<-done
		return
	}
	a.supervise(c, r, killer, done)
}

// command is a command resolved inside the sandbox, ready to start.
type command struct {
	path string
	argv []string
	env  []string
	dir  string
}

// resolveCommand finds a request's working directory and program inside
// the sandbox; where it cannot, it returns the reply that says why.
func (a *agent) resolveCommand(req *agentproto.Request) (*command, *agentproto.Reply) {
	a.mu.Lock()
	env := mergeEnv(a.env, req.Env)
	a.mu.Unlock()
	dir := a.abs(".")
	if req.Dir != "" {
		dir = a.abs(req.Dir)
	}
	// The directory is resolved inside the sandbox, never through a magic
	// link, and the command is started in the directory found.
	resolved, err := a.root.resolveDir(dir)
	if err != nil {
		msg := fmt.Sprintf("working directory %s does not exist or is not a directory", dir)
		if errors.Is(err, errProcessEntry) || errors.Is(err, syscall.ELOOP) {
			msg = fmt.Sprintf("working directory %s: %v", dir, errors.Unwrap(err))
		}
		return nil, &agentproto.Reply{Err: msg, Errno: int(syscall.ENOENT)}
	}
	path, err := a.lookPath(req.Argv[0], env, resolved)
	if err != nil {
		return nil, &agentproto.Reply{Err: err.Error(), NotFound: true}
	}
	return &command{path: path, argv: req.Argv, env: env, dir: resolved}, nil
}

// startCommand has the spawner fork and exec cmd in group (nil: the
// sandbox's cgroup) with stdio as its descriptors 0, 1 and 2, and
// registers it: done receives its exit code.
func (a *agent) startCommand(cmd *command, group *GroupFiles, stdio []uintptr, sys *syscall.SysProcAttr) (pid int, done chan int, err error) {
	// mu is held from fork to registration so the reaper, which needs mu
	// to deliver an exit, cannot lose a command that exits at once.
	a.mu.Lock()
	defer a.mu.Unlock()
	res := make(chan spawnResult, 1)
	a.spawn <- spawnRequest{path: cmd.path, argv: cmd.argv, reply: res, group: group, attr: &syscall.ProcAttr{
		Dir:   cmd.dir,
		Env:   cmd.env,
		Files: stdio,
		Sys:   sys,
	}}
	sr := <-res
	if sr.err != nil {
		return 0, nil, sr.err
	}
	// Sandboxed processes, not the agent, are what the kernel's OOM killer
	// should pick when the sandbox runs out of memory: the agent's death
	// would end the sandbox. (Raising a score needs no privilege; lowering
	// the agent's would.)
	os.WriteFile("/proc/"+strconv.Itoa(sr.pid)+"/oom_score_adj", []byte("1000"), 0)
	done = make(chan int, 1)
	a.waiters[sr.pid] = done
	return sr.pid, done, nil
}

// startFailed is the reply to a command that could not be started.
func startFailed(err error) agentproto.Reply {
	rep := errReply(err)
	rep.NotFound = errors.Is(err, syscall.ENOENT)
	return rep
}

// supervise reports a started command's exit code, killing its process
// tree when the host asks or hangs up first.
func (a *agent) supervise(c *conn, r io.Reader, killer *commandKiller, done chan int) {
	finished := make(chan struct{})
	go func() {
		for {
			var m agentproto.Control
			err := agentproto.ReadMsg(r, &m)
			select {
			case <-finished:
				return
			default:
			}
			if err != nil || m.Kill {
				killer.kill()
			}
			if err != nil {
				return
			}
		}
	}()
	code := <-done
	killer.finish() // a kill under way completes before the exit is told
	close(finished)
	agentproto.WriteMsg(c, agentproto.Reply{Exit: &code})
}

// reap collects every child that exits, the commands' and the orphans
// that were reparented to the agent.
func (a *agent) reap(sigc chan os.Signal) {
	for range sigc {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			a.mu.Lock()
			if ch, ok := a.waiters[pid]; ok {
				delete(a.waiters, pid)
				ch <- code
			}
			a.mu.Unlock()
		}
	}
}

// KillTree kills a command and everything it started: its process group,
// its session (a terminal's) and every descendant, found through /proc.
// Each round stops what it finds (so nothing forks behind our back) and
// looks again; then all are killed. The host calls it too, on the agent
// of a sandbox without isolation, whose commands no pid namespace ends.
func KillTree(root int) { killProcesses(root, true) }

// KillSession kills what is left of a terminal's session once its leader,
// root, has exited: every process of the session or of root's process
// group. The leader's pid can name no other process while any of them
// lives (the kernel does not reuse a process or session id in use), which
// a search of root's descendants could not rely on.
func KillSession(root int) { killProcesses(root, false) }

func killProcesses(root int, tree bool) {
	victims := map[int]bool{}
	for range 8 {
		added := false
		procs := procTable()
		for pid, p := range procs {
			if victims[pid] {
				continue
			}
			if p.group == root || p.session == root || tree && (pid == root || isDescendant(pid, root, procs, victims)) {
				victims[pid] = true
				unix.Kill(pid, unix.SIGSTOP)
				added = true
			}
		}
		if !added {
			break
		}
	}
	if tree {
		victims[root] = true
	}
	for pid := range victims {
		unix.Kill(pid, unix.SIGKILL)
	}
	if tree {
		unix.Kill(-root, unix.SIGKILL)
	}
}

func isDescendant(pid, root int, procs map[int]procInfo, known map[int]bool) bool {
	for range 64 {
		pp := procs[pid].parent
		if pp <= 1 {
			return false
		}
		if pp == root || known[pp] {
			return true
		}
		pid = pp
	}
	return false
}

// procInfo is what killProcesses needs to know of a process.
type procInfo struct{ parent, group, session int }

// procTable reads every process's parent, process group and session from
// /proc.
func procTable() map[int]procInfo {
	procs := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parens: fields start after
		// the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 4 {
			continue
		}
		var p procInfo
		p.parent, _ = strconv.Atoi(f[1])
		p.group, _ = strconv.Atoi(f[2])
		p.session, _ = strconv.Atoi(f[3])
		procs[pid] = p
	}
	return procs
}

func mergeEnv(base []string, extra map[string]string) []string {
	if len(extra) == 0 {
		return base
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := extra[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}

// lookPath finds a program the way a shell would, using the command's own
// PATH. Candidates are resolved inside the sandbox, like every path from
// outside, so neither a program nor a PATH entry can lead through a magic
// link.
func (a *agent) lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		if err := a.executable(p); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
	search := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	// PATH's entries (none where it is empty); an empty entry is the
	// working directory.
	var dirs []string
	if search != "" {
		dirs = strings.Split(search, ":")
	}
	for _, d := range dirs {
		if d == "" {
			d = "."
		}
		p := path.Join(d, name)
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		if a.executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

func (a *agent) executable(p string) error {
	st, err := a.root.stat(p)
	if err != nil {
		return err
	}
	if st.Dir || st.Mode&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// open streams a regular file into the host's pipe, then reports.
func (a *agent) open(c *conn, path string, pipe *os.File) {
	f, size, err := a.root.openRegular(path)
	if err != nil {
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	defer f.Close()
	if err := agentproto.WriteMsg(c, agentproto.Reply{Files: []agentproto.FileStat{{Size: size}}}); err != nil {
		return
	}
	_, err = copyBig(pipe, f)
	pipe.Close()
	agentproto.WriteMsg(c, errReply(err))
}

// write streams the host's pipe into a temporary file next to path and
// renames it into place only when the host says all data was sent, so a
// failed write never leaves a half-written file. The directory is
// resolved once, inside the sandbox; everything after goes through it.
func (a *agent) write(c *conn, r io.Reader, name string, pipe *os.File) {
	dir, base := path.Split(name)
	err := a.root.mkdirAll(dir)
	mode := uint32(0o644)
	if err == nil && base == "" {
		err = &fs.PathError{Op: "write", Path: name, Err: syscall.EISDIR}
	}
	if err == nil {
		if st, serr := a.root.stat(name); serr == nil {
			if st.Dir {
				err = &fs.PathError{Op: "write", Path: name, Err: syscall.EISDIR}
			}
			mode = st.Mode
		}
	}
	dfd := -1
	if err == nil {
		dfd, err = a.root.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	}
	var tmp *os.File
	var tmpName string
	if err == nil {
		defer unix.Close(dfd)
		tmp, tmpName, err = a.root.createTemp(dfd)
		if err != nil {
			err = &fs.PathError{Op: "write", Path: name, Err: err}
		}
	}
	if err != nil {
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	defer func() {
		tmp.Close()
		unix.Unlinkat(dfd, tmpName, 0)
	}()
	if err := agentproto.WriteMsg(c, agentproto.Reply{}); err != nil {
		return
	}
	if _, err := copyBig(tmp, pipe); err != nil {
		pipe.Close() // the host's writes now fail at once
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	var m agentproto.Control
	if err := agentproto.ReadMsg(r, &m); err != nil || !m.Commit {
		agentproto.WriteMsg(c, agentproto.Reply{Err: "write aborted by host"})
		return
	}
	if err := tmp.Chmod(os.FileMode(mode)); err != nil {
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	if err := tmp.Close(); err != nil {
		agentproto.WriteMsg(c, errReply(err))
		return
	}
	if err := unix.Renameat(dfd, tmpName, dfd, base); err != nil {
		agentproto.WriteMsg(c, errReply(&fs.PathError{Op: "write", Path: name, Err: err}))
		return
	}
	agentproto.WriteMsg(c, agentproto.Reply{Done: true})
}

// copyBig copies in 1 MiB steps. Neither end supports copy_file_range or
// sendfile here (a pipe and a tmpfs file), and io.Copy's 32 KiB steps cost
// 32 times the system calls.
func copyBig(dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
