//go:build linux

package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute"
)

// hardening turns the kernel confinement (seccomp, Landlock, capabilities)
// and cgroup limits on. Only the benchmarks that measure their cost turn it
// off (export_test.go).
var hardening = true

// outputGrace is how long Wait keeps reading a command's output after it
// exited, for output still in flight; a background process that inherited
// the pipes does not hold Wait longer than this.
const outputGrace = 250 * time.Millisecond

func checkSupport(opts Options) error {
	if opts.Isolation == IsolationNone {
		return nil
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && string(b) == "0\n" {
		return errors.New("local: user namespaces are disabled on this machine (/proc/sys/user/max_user_namespaces is 0); enable them, or use local.Options{Isolation: local.IsolationNone} to run unisolated, trusted code only")
	}
	return nil
}

// sandbox is the host's handle on one agent.
type sandbox struct {
	p       *Provider
	id      string
	name    string
	meta    map[string]string
	runtime compute.Runtime
	created time.Time
	timeout time.Duration
	workDir string // inside the sandbox
	dir     string // default working directory inside

	network bool // shares the host's network

	agent  *exec.Cmd
	ctl    *net.UnixConn
	exited chan struct{} // closed when the agent process has exited
	timer  *time.Timer
	// hostDir is a host directory to remove at the end (IsolationNone).
	hostDir string

	limits []string      // what the sandbox enforces, for Info
	cg     *cgroupLimits // nil where cgroups are unavailable
	quota  *reservation  // its share of the provider-wide caps
	proxy  *proxy        // the network allowlist's proxy, if any

	releaseOnce sync.Once
	releaseErr  error

	mu        sync.Mutex
	destroyed bool
	expired   bool
}

var _ compute.FileSystemProvider = (*sandbox)(nil)

// hostID picks the unprivileged host uid (and gid) a sandbox's code runs
// as, and reports whether the agent gets one of its own (the next one). As
// root we can map any id: each sandbox gets its own pair, far from real
// users, so sandboxes cannot signal or share files with each other or
// anyone, and sandboxed code cannot touch its agent's process attributes
// (oom_score_adj, rlimits), which the kernel lets any process of the same
// uid change. Without root the kernel lets us map only our own uid, which
// the agent and the code then share.
func hostID() (uid, gid int, separate bool) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), false
	}
	id := 1_000_000_000 + 2*rand.IntN(500_000_000)
	return id, id, true
}

// agentUID is the agent's uid inside the sandbox's user namespace when it
// has a host uid of its own; sandboxed code is uid 0 (root) there.
const agentUID = 1

// allCaps lists every capability this kernel knows: the agent keeps them,
// in the sandbox's user namespace only, across the exec that starts it as
// agentUID.
func allCaps() []uintptr {
	var caps []uintptr
	for c := 0; c <= lastCap(); c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}

// startAgent starts a sandbox up to the point where it can run commands,
// without anything of a particular Create: that is bound by activate. The
// split lets the provider start sandboxes ahead of demand (Prestart).
//
// Its result is unnamed on purpose: the cleanups below use s, which a
// "return nil, err" would otherwise set to nil before they run.
func startAgent(p *Provider, network bool, gpus []string) (_ *sandbox, err error) {
	isolate := p.opts.Isolation == IsolationNamespaces
	cfg := agentConfig{
		GPUs:     gpus,
		Isolate:  isolate,
		Confine:  hardening,
		WorkDir:  WorkDir,
		Network:  network,
		DiskSize: p.opts.DiskSize,
		Hostname: "sandbox",
		Limits: limits{
			Procs:    uint64(p.opts.MaxProcesses),
			Files:    uint64(p.opts.MaxOpenFiles),
			FileSize: uint64(p.opts.MaxFileSize),
		},
	}
	s := &sandbox{p: p, network: network, exited: make(chan struct{})}
	var cleanups []func()
	defer func() {
		if err != nil {
			for _, f := range cleanups {
				f()
			}
		}
	}()
	if s.quota, err = p.quota.reserve(); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, s.quota.release)

	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if isolate {
		uid, gid, separate := hostID()
		attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC // cgroup: ownCgroupNamespace, once in its cgroup
		if !network {
			attr.Cloneflags |= syscall.CLONE_NEWNET
		}
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
		attr.GidMappingsEnableSetgroups = os.Geteuid() == 0
		// Without an explicit credential a root parent would leave the
		// child's host uid at 0; this makes it uid 0 inside = uid above
		// outside.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		if separate {
			// Inside: 0 is the sandbox's code, agentUID the agent, which
			// keeps its capabilities (of this namespace) through the exec.
			attr.UidMappings[0].Size = agentUID + 1
			attr.GidMappings[0].Size = agentUID + 1
			attr.Credential = &syscall.Credential{Uid: agentUID, Gid: agentUID, NoSetGroups: true}
			attr.AmbientCaps = allCaps()
			cfg.Separate = true
		}
		// The root is built on an empty host directory the agent can
		// reach; it is removed as soon as the agent has pivoted away.
		staging, err := os.MkdirTemp("", stagingPrefix())
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		cleanups = append(cleanups, func() { os.Remove(staging) })
		if err := os.Chmod(staging, 0o711); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		cfg.Staging = staging
		cfg.Dir = WorkDir
		s.workDir = WorkDir
	} else {
		dir, err := os.MkdirTemp("", "compute-sandbox-")
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		s.hostDir = dir
		cfg.Dir = dir
		s.workDir = dir
	}
	cfg.Env = baseEnv(s.workDir)

	ctl, agentEnd, err := unixPair(unix.SOCK_SEQPACKET)
	if err != nil {
		return nil, err
	}
	defer agentEnd.Close()
	s.ctl = ctl
	cleanups = append(cleanups, func() { s.ctl.Close() })

	s.agent = &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{agentArg0},
		Env:         []string{agentEnv},
		ExtraFiles:  []*os.File{agentEnd},
		SysProcAttr: attr,
	}
	if err := s.agent.Start(); err != nil {
		return nil, fmt.Errorf("local: start sandbox agent: %w%s", err, startHint(err))
	}
	cleanups = append(cleanups, func() { s.agent.Process.Kill(); <-s.exited })

	// Resource limits, before the agent runs anything of the caller's: it
	// is waiting for its configuration.
	lim := resourceLimits{memory: p.opts.MaxMemory, pids: int64(p.opts.MaxProcesses), cpus: p.opts.MaxCPU}
	cgErr := errors.New("not isolated")
	if isolate && hardening {
		s.cg, cgErr = newCgroup(newID(), lim)
	}
	if s.cg != nil {
		cleanups = append(cleanups, func() { s.cg.remove() })
		if err := s.cg.add(s.agent.Process.Pid); err != nil {
			return nil, fmt.Errorf("local: add sandbox to its cgroup: %w", err)
		}
		v := s.cg.version()
		s.limits = append(s.limits,
			fmt.Sprintf("memory %s for the whole sandbox, files in memory included (%s)", bytesString(lim.memory), v),
			fmt.Sprintf("processes %d (%s pids, RLIMIT_NPROC)", lim.pids, v),
			fmt.Sprintf("cpu %.2f CPUs (%s quota)", lim.cpus, v),
			s.cg.socketsLimit(lim.memory))
	} else {
		if p.explicitMemory {
			cfg.Limits.Memory = uint64(lim.memory)
			s.limits = append(s.limits, fmt.Sprintf("memory %s per process (RLIMIT_AS; cgroups unavailable: %v)", bytesString(lim.memory), cgErr))
		} else {
			s.limits = append(s.limits, fmt.Sprintf("memory: not limited (cgroups unavailable: %v)", cgErr))
		}
		s.limits = append(s.limits, fmt.Sprintf("processes %d (RLIMIT_NPROC)", lim.pids), "cpu: not limited (cgroups unavailable)")
	}
	s.limits = append(s.limits, commandsLimit(s.cg, cgErr))
	s.limits = append(s.limits,
		fmt.Sprintf("open files %d per process (RLIMIT_NOFILE)", p.opts.MaxOpenFiles),
		fmt.Sprintf("file size %s (RLIMIT_FSIZE)", bytesString(p.opts.MaxFileSize)))
	if len(gpus) > 0 {
		s.limits = append(s.limits, "gpu: "+strings.Join(gpus, ", "))
	}
	if isolate {
		s.limits = append(s.limits, fmt.Sprintf("disk %s for all files written, %s and /tmp included (tmpfs, counted in memory)", bytesString(p.opts.DiskSize), WorkDir))
		if network {
			s.limits = append(s.limits, "network: host")
		}
	} else {
		s.limits = append(s.limits, "isolation: NONE (plain host processes)")
	}
	go func() {
		s.agent.Wait()
		close(s.exited)
		s.mu.Lock()
		gone := s.destroyed
		s.mu.Unlock()
		if !gone {
			// Died on its own (killed, out of memory): gone from the
			// provider, its host resources freed, its status "error".
			p.forget(s)
			s.release()
		}
	}()

	// Hand over the configuration and wait for the agent to be ready.
	b, _ := json.Marshal(cfg)
	if _, err := s.ctl.Write(b); err != nil {
		return nil, fmt.Errorf("local: configure sandbox agent: %w", err)
	}
	buf := make([]byte, 1<<16)
	n, err := s.ctl.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("local: sandbox agent exited during setup (%v)%s", err, startHint(err))
	}
	var rep reply
	if err := json.Unmarshal(buf[:n], &rep); err != nil || !rep.Done {
		msg := rep.Err
		if msg == "" {
			msg = fmt.Sprintf("unexpected reply %q", buf[:n])
		}
		return nil, fmt.Errorf("local: sandbox setup failed: %s", msg)
	}
	if cfg.Staging != "" {
		os.Remove(cfg.Staging)
	}
	s.limits = append(s.limits, rep.Enforced...)
	return s, nil
}

// activate makes a started sandbox the one a Create asked for: its id,
// environment, working directory, metadata and lifetime.
func (s *sandbox) activate(ctx context.Context, id string, opts *compute.CreateOptions) error {
	p := s.p
	s.id, s.name, s.meta, s.runtime = id, opts.Name, maps.Clone(opts.Metadata), opts.Runtime
	s.timeout = opts.Timeout
	if s.timeout == 0 {
		s.timeout = p.opts.Timeout
	}
	s.dir = s.workDir
	if opts.Dir != "" {
		s.dir = opts.Dir
		if !path.IsAbs(s.dir) {
			s.dir = path.Join(s.workDir, s.dir)
		}
	}
	env := opts.Env
	if len(opts.NetworkAllow) > 0 {
		// The proxy is the only way out; its settings win.
		env = maps.Clone(opts.Env)
		if env == nil {
			env = map[string]string{}
		}
		for k, v := range proxyEnv() {
			env[k] = v
		}
		s.proxy = newProxy(id, opts.NetworkAllow)
		s.proxy.wg.Add(1)
		go s.proxy.serve(s.ctl)
		s.limits = append(s.limits, fmt.Sprintf("network: only %s (HTTP/HTTPS proxy enforced in the host, at %s inside)", strings.Join(opts.NetworkAllow, ", "), proxyAddr))
	}
	if !s.network && s.proxy == nil && s.p.opts.Isolation == IsolationNamespaces {
		s.limits = append(s.limits, "network: none (own loopback only)")
	}
	rep, err := s.call(ctx, &request{Op: opInit, Env: env, Dir: s.dir, Proxy: s.proxy != nil})
	if err == nil && rep.Err != "" {
		err = fmt.Errorf("local: working directory %s: %s", s.dir, rep.Err)
	}
	if err != nil {
		return err
	}
	s.limits = append(s.limits, fmt.Sprintf("lifetime %v", s.timeout))
	s.created = time.Now()
	s.timer = time.AfterFunc(s.timeout, func() {
		s.mu.Lock()
		s.expired = true
		s.mu.Unlock()
		p.Destroy(context.Background(), s.id)
	})
	return nil
}

func startHint(err error) string {
	if errors.Is(err, syscall.EACCES) {
		return " (the program's executable must be readable and executable by an unprivileged user, as the sandbox runs as one)"
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return " (this process is out of file descriptors: raise its limit, e.g. ulimit -n 4096, or run fewer sandboxes)"
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return " (this machine refused to create namespaces; user namespaces may be restricted here; local.IsolationNone runs without isolation)"
	}
	return ""
}

func (s *sandbox) ID() string { return s.id }

// destroy kills the agent (the kernel then kills every process in the
// sandbox's pid namespace, and its mounts and memory file systems go with
// the last of them) and removes any host directory.
func (s *sandbox) destroy() error {
	s.mu.Lock()
	if s.destroyed {
		s.mu.Unlock()
		<-s.exited
		return nil
	}
	s.destroyed = true
	s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.hostDir != "" {
		// IsolationNone: no pid namespace will kill the commands for us.
		killTree(s.agent.Process.Pid)
	}
	s.agent.Process.Kill()
	<-s.exited
	return s.release()
}

// release frees what a dead sandbox still holds in the host: its control
// socket, proxy, cgroup and (IsolationNone) directory. It runs once, from
// destroy or when the agent died on its own.
func (s *sandbox) release() error {
	s.releaseOnce.Do(func() {
		s.quota.release()
		s.ctl.Close()
		if s.proxy != nil {
			s.proxy.stop()
		}
		if s.cg != nil {
			if err := s.cg.remove(); err != nil {
				s.releaseErr = fmt.Errorf("local: %w", err)
				return
			}
		}
		if s.hostDir != "" {
			if err := os.RemoveAll(s.hostDir); err != nil {
				s.releaseErr = fmt.Errorf("local: remove sandbox directory: %w", err)
			}
		}
	})
	return s.releaseErr
}

func (s *sandbox) status() compute.Status {
	select {
	case <-s.exited:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.destroyed || s.expired {
			return compute.StatusStopped
		}
		return compute.StatusError
	default:
		return compute.StatusRunning
	}
}

// Info describes the sandbox. A running sandbox's agent is asked whether
// it answers: one that does not (wedged, or out of descriptors) makes the
// status StatusError, since nothing can be done in the sandbox.
func (s *sandbox) Info(ctx context.Context) (*compute.Info, error) {
	status := s.status()
	if status == compute.StatusRunning && !s.answers(ctx) && ctx.Err() == nil {
		status = compute.StatusError
	}
	return &compute.Info{
		ID:        s.id,
		Provider:  "local",
		Name:      s.name,
		Status:    status,
		Runtime:   s.runtime,
		CreatedAt: s.created,
		Timeout:   s.timeout,
		Metadata:  maps.Clone(s.meta),
		Limits:    append([]string(nil), s.limits...),
	}, nil
}

// answers reports whether the agent answers a ping within agentReplyTimeout.
func (s *sandbox) answers(ctx context.Context) bool {
	rep, err := s.call(ctx, &request{Op: opPing})
	return err == nil && rep.Done
}

// agentReplyTimeout bounds the wait for the agent's answer to an operation
// that waits on nothing of the caller's (a ping, a stat, a mkdir, the
// start of a command or of a file transfer): an agent that takes this long
// is wedged, and the caller gets an error that says so, not a hang.
const agentReplyTimeout = time.Minute

func (s *sandbox) stoppedErr() error {
	return fmt.Errorf("local: sandbox %s: %w", s.id, compute.ErrStopped)
}

// op is one operation's connection to the agent.
type op struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// begin sends the agent a new operation with the given descriptors, then
// the request, and returns the connection. The descriptors are the
// agent's: begin closes them here.
func (s *sandbox) begin(ctx context.Context, req *request, fds ...*os.File) (*op, error) {
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	select {
	case <-s.exited:
		return nil, s.stoppedErr()
	default:
	}
	conn, theirs, err := unixPair(unix.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	rights := []int{int(theirs.Fd())}
	for _, f := range fds {
		rights = append(rights, int(f.Fd()))
	}
	if _, _, err := s.ctl.WriteMsgUnix([]byte{1}, unix.UnixRights(rights...), nil); err != nil {
		conn.Close()
		return nil, s.stoppedErr()
	}
	if err := writeMsg(conn, req); err != nil {
		conn.Close()
		if errors.Is(err, errTooBig) {
			// Arguments and environment far past what exec takes: the
			// caller's mistake, not the sandbox's end.
			return nil, fmt.Errorf("local: the request is too large for the sandbox (%v): %w", err, syscall.E2BIG)
		}
		return nil, s.stoppedErr()
	}
	return &op{conn: conn, r: bufio.NewReader(conn)}, nil
}

// answer reads the agent's next reply to an operation that waits on
// nothing of the caller's, giving up when ctx is done or after
// agentReplyTimeout.
func (o *op) answer(ctx context.Context) (*reply, error) {
	bounded, cancel := context.WithTimeout(ctx, agentReplyTimeout)
	defer cancel()
	rep, err := o.reply(bounded)
	if err != nil && ctx.Err() == nil && bounded.Err() != nil {
		return nil, fmt.Errorf("the sandbox's agent did not answer within %v", agentReplyTimeout)
	}
	return rep, err
}

// reply reads the agent's next reply, giving up when ctx is done.
func (o *op) reply(ctx context.Context) (*reply, error) {
	stop := context.AfterFunc(ctx, func() { o.conn.SetReadDeadline(time.Now()) })
	defer stop()
	var rep reply
	if err := readMsg(o.r, &rep); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return &rep, nil
}

// call runs a request/reply operation.
func (s *sandbox) call(ctx context.Context, req *request) (*reply, error) {
	o, err := s.begin(ctx, req)
	if err != nil {
		return nil, err
	}
	defer o.conn.Close()
	rep, err := o.answer(ctx)
	if err != nil {
		return nil, s.lost(err)
	}
	return rep, nil
}

// lost turns a broken connection into the reason: usually the sandbox died.
func (s *sandbox) lost(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	select {
	case <-s.exited:
		return s.stoppedErr()
	case <-time.After(50 * time.Millisecond):
		return fmt.Errorf("local: sandbox %s: lost connection to agent: %w", s.id, err)
	}
}

// Start runs a command in the sandbox. Its stdio are pipes whose far ends
// go straight to the process: output never passes through the agent.
func (s *sandbox) Start(ctx context.Context, req *compute.ExecRequest) (compute.ProviderProcess, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// One writer for both streams: one pipe for both, so order is kept.
	combined := compute.SameWriter(req.Stdout, req.Stderr)
	errR, errW := outR, outW
	if !combined {
		if errR, errW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			return nil, err
		}
	}
	fds := []*os.File{outW, errW}
	var inW *os.File
	if req.Stdin != nil {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			outR.Close()
			errR.Close()
			outW.Close()
			errW.Close()
			return nil, err
		}
		fds = append(fds, inR)
	}
	closeMine := func() {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
	}
	grp, err := s.cg.command() // nil where commands get no cgroup of their own
	if err != nil {
		closeMine()
		for _, f := range fds {
			f.Close()
		}
		select {
		case <-s.exited: // its cgroup went with it
			err = s.stoppedErr()
		default:
		}
		return nil, err
	}
	if grp != nil {
		fds = append(fds, grp.files()...)
	}
	o, err := s.begin(ctx, &request{Op: opExec, Argv: req.Argv, Env: req.Env, Dir: req.Dir, Stdin: req.Stdin != nil, Group: grp != nil}, fds...)
	if err != nil {
		closeMine()
		grp.done()
		return nil, err
	}
	rep, err := o.answer(ctx)
	if err == nil && rep.Err != "" {
		err = errors.New(rep.Err)
		if rep.NotFound {
			// The agent's reason names the program already ("x: command
			// not found", or why exec failed): say it once.
			err = fmt.Errorf("local: %s: %w", strings.TrimSuffix(rep.Err, ": command not found"), compute.ErrCommandNotFound)
		} else if rep.Errno != 0 {
			err = fmt.Errorf("local: %s: %w", rep.Err, syscall.Errno(rep.Errno))
		}
	} else if err != nil {
		err = s.lost(err)
	}
	if err != nil {
		o.conn.Close()
		closeMine()
		grp.done()
		return nil, err
	}
	p := &process{op: o, outR: outR, errR: errR, inW: inW, s: s, group: grp}
	if s.cg != nil {
		p.oomBefore = s.cg.oomKills()
	}
	p.copies.Add(1)
	go p.copy(req.Stdout, outR)
	if !combined {
		p.copies.Add(1)
		go p.copy(req.Stderr, errR)
	}
	if inW != nil {
		go func() {
			io.Copy(inW, req.Stdin)
			inW.Close()
		}()
	}
	return p, nil
}

type process struct {
	s          *sandbox
	op         *op
	outR, errR *os.File
	inW        *os.File
	copies     sync.WaitGroup
	copied     atomic.Int64 // bytes the copies have read, both streams

	killMu sync.Mutex
	ended  bool

	oomBefore uint64    // the cgroup's OOM kill count when the command started
	group     *cmdGroup // the command's own cgroup, if any
}

func (p *process) copy(w io.Writer, r *os.File) {
	defer p.copies.Done()
	io.Copy(w, countingReader{r, &p.copied})
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// drain ends the copies of a command that exited while something it
// started still holds its output open. Everything the command wrote
// before it exited is in the pipes or already read: the copies read all of
// it first, however long a loaded machine or a slow writer makes them
// take, and only then are the pipes closed. Output of the processes left
// behind after that is not the command's and is not waited for.
func (p *process) drain(done <-chan struct{}) {
	pipes := []*os.File{p.outR}
	if p.errR != p.outR {
		pipes = append(pipes, p.errR)
	}
	buffered := func() (n int64) {
		for _, f := range pipes {
			n += pipeBuffered(f)
		}
		return n
	}
	// What is buffered now was written before now; reading at least that
	// much more, or finding the pipes empty, means it all arrived.
	target := p.copied.Load() + buffered()
	for p.copied.Load() < target && buffered() > 0 {
		select {
		case <-done:
			return
		case <-time.After(time.Millisecond):
		}
	}
	p.outR.Close()
	p.errR.Close()
	<-done
}

// pipeBuffered returns how many bytes wait unread in a pipe.
func pipeBuffered(f *os.File) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) // FIONREAD
	return int64(n)
}

func (p *process) Wait() (int, error) {
	rep, err := p.op.reply(context.Background())
	p.group.reuse()
	p.killMu.Lock()
	p.ended = true
	p.killMu.Unlock()
	p.op.conn.Close()
	if p.inW != nil {
		p.inW.Close()
	}
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputGrace):
		// Something the command started still holds its output open, or
		// the copies are slow: read what the command wrote, then stop.
		p.drain(done)
	}
	p.outR.Close()
	p.errR.Close()
	if err != nil {
		return -1, p.s.lost(err)
	}
	if rep.Exit == nil {
		return -1, fmt.Errorf("local: sandbox %s: agent sent no exit status", p.s.id)
	}
	if *rep.Exit == 128+int(syscall.SIGKILL) && p.s.cg != nil && p.s.cg.oomKills() > p.oomBefore {
		return *rep.Exit, fmt.Errorf("local: sandbox %s: command killed for going over the %s memory limit: %w",
			p.s.id, bytesString(p.s.p.opts.MaxMemory), compute.ErrOutOfMemory)
	}
	return *rep.Exit, nil
}

func (p *process) Kill() error {
	p.killMu.Lock()
	defer p.killMu.Unlock()
	if p.ended {
		return nil
	}
	return writeMsg(p.op.conn, control{Kill: true})
}

// FileSystem returns the sandbox's native file access.
func (s *sandbox) FileSystem() compute.ProviderFileSystem { return (*sandboxFS)(s) }

type sandboxFS sandbox

func (f *sandboxFS) s() *sandbox { return (*sandbox)(f) }

// pathErr rebuilds an agent's error as an *fs.PathError; errno values keep
// errors.Is(err, fs.ErrNotExist) and friends working.
func pathErr(op, name string, rep *reply) error {
	if rep.Errno != 0 {
		return &fs.PathError{Op: op, Path: name, Err: syscall.Errno(rep.Errno)}
	}
	return &fs.PathError{Op: op, Path: name, Err: errors.New(rep.Err)}
}

func (f *sandboxFS) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r, w, err := bigPipe()
	if err != nil {
		return nil, err
	}
	o, err := f.s().begin(ctx, &request{Op: opOpen, Path: name}, w)
	if err != nil {
		r.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	rep, err := o.answer(ctx)
	if err == nil && rep.Err != "" {
		err = pathErr("open", name, rep)
	} else if err != nil {
		err = &fs.PathError{Op: "open", Path: name, Err: f.s().lost(err)}
	}
	if err != nil {
		o.conn.Close()
		r.Close()
		return nil, err
	}
	fr := &fileReader{r: r, op: o, name: name, ctx: ctx, size: -1}
	if len(rep.Files) == 1 {
		fr.size = rep.Files[0].Size
	}
	return fr, nil
}

// fileReader reads a file streamed through a pipe, and at the end checks
// the agent's verdict so a failed read is never mistaken for a short file.
type fileReader struct {
	r    *os.File
	op   *op
	name string
	ctx  context.Context
	err  error
	size int64 // as the agent saw it when opening; -1 if unknown
}

// Size is the file's size when it was opened, so readers can size their
// buffers (compute's ReadFile does).
func (fr *fileReader) Size() int64 { return fr.size }

func (fr *fileReader) Read(b []byte) (int, error) {
	if fr.err != nil {
		return 0, fr.err
	}
	n, err := fr.r.Read(b)
	if err == io.EOF {
		rep, rerr := fr.op.reply(fr.ctx)
		switch {
		case rerr != nil:
			fr.err = &fs.PathError{Op: "read", Path: fr.name, Err: rerr}
		case rep.Err != "":
			fr.err = pathErr("read", fr.name, rep)
		default:
			fr.err = io.EOF
		}
		return n, fr.err
	}
	if err != nil {
		fr.err = err
	}
	return n, err
}

func (fr *fileReader) Close() error {
	fr.op.conn.Close()
	return fr.r.Close()
}

func (f *sandboxFS) WriteFile(ctx context.Context, name string, src io.Reader) error {
	r, w, err := bigPipe()
	if err != nil {
		return err
	}
	defer w.Close()
	o, err := f.s().begin(ctx, &request{Op: opWrite, Path: name}, r)
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	defer o.conn.Close()
	rep, err := o.answer(ctx)
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: f.s().lost(err)}
	}
	if rep.Err != "" {
		return pathErr("write", name, rep)
	}
	stop := context.AfterFunc(ctx, func() { w.SetWriteDeadline(time.Now()) })
	_, copyErr := io.Copy(w, src)
	stop()
	w.Close()
	if copyErr != nil && ctx.Err() != nil {
		copyErr = ctx.Err()
	}
	// On a failed copy the agent discards the temporary file.
	if err := writeMsg(o.conn, control{Commit: copyErr == nil}); err != nil && copyErr == nil {
		copyErr = err
	}
	rep, err = o.answer(ctx)
	switch {
	case err == nil && rep.Err != "" && (copyErr == nil || errors.Is(copyErr, syscall.EPIPE)):
		// The agent's reason (say, ENOSPC) beats our broken pipe.
		return pathErr("write", name, rep)
	case copyErr != nil:
		return &fs.PathError{Op: "write", Path: name, Err: copyErr}
	case err != nil:
		return &fs.PathError{Op: "write", Path: name, Err: f.s().lost(err)}
	}
	return nil
}

func (f *sandboxFS) simple(ctx context.Context, opName, name string, req *request) (*reply, error) {
	rep, err := f.s().call(ctx, req)
	if err != nil {
		return nil, &fs.PathError{Op: opName, Path: name, Err: err}
	}
	if rep.Err != "" {
		return nil, pathErr(opName, name, rep)
	}
	return rep, nil
}

func (f *sandboxFS) MkdirAll(ctx context.Context, name string) error {
	_, err := f.simple(ctx, "mkdir", name, &request{Op: opMkdir, Path: name})
	return err
}

func (f *sandboxFS) RemoveAll(ctx context.Context, name string) error {
	_, err := f.simple(ctx, "remove", name, &request{Op: opRemove, Path: name})
	return err
}

func toInfo(st fileStat) compute.FileInfo {
	return compute.FileInfo{
		Name: st.Name, Path: st.Path, IsDir: st.Dir, Size: st.Size, Mode: st.Mode,
		ModTime: time.Unix(0, st.ModTime),
	}
}

func (f *sandboxFS) ReadDir(ctx context.Context, name string) ([]compute.FileInfo, error) {
	rep, err := f.simple(ctx, "readdir", name, &request{Op: opReadDir, Path: name})
	if err != nil {
		return nil, err
	}
	out := make([]compute.FileInfo, 0, len(rep.Files))
	for _, st := range rep.Files {
		if st.Name == "." || st.Name == ".." || st.Name == "" {
			continue
		}
		out = append(out, toInfo(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *sandboxFS) Stat(ctx context.Context, name string) (*compute.FileInfo, error) {
	rep, err := f.simple(ctx, "stat", name, &request{Op: opStat, Path: name})
	if err != nil {
		return nil, err
	}
	if len(rep.Files) != 1 {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: errors.New("malformed reply from sandbox")}
	}
	fi := toInfo(rep.Files[0])
	return &fi, nil
}

// bigPipe is a pipe with a 1 MiB buffer where the kernel allows it (the
// default is 64 KiB), for moving files: fewer trips between the two ends.
func bigPipe() (r, w *os.File, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, err
	}
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	return r, w, nil
}

// gpuDevices returns the device nodes that give a sandbox the host's
// NVIDIA GPUs, or an error saying there are none. Local sandboxes get all
// of the host's GPUs; the type in the request is not checked.
func gpuDevices(request string) ([]string, error) {
	if request == "" {
		return nil, nil
	}
	devs, _ := filepath.Glob("/dev/nvidia*")
	var out []string
	for _, d := range devs {
		if fi, err := os.Stat(d); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("local: GPU %q requested, but this machine has no NVIDIA GPU (no /dev/nvidia* devices); use a provider with GPUs (modal): %w", request, compute.ErrUnsupported)
	}
	return out, nil
}

// stagingPrefix names the empty directories sandbox roots are built on
// after the owning process, so that one whose owner died during a create
// can be told apart and removed (sweepStaging).
func stagingPrefix() string { return "compute-root-" + strconv.Itoa(os.Getpid()) + "-" }

// sweepStaging removes staging directories left by processes that died
// while creating a sandbox. They are empty; Remove fails on anything else.
func sweepStaging() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "compute-root-*-*"))
	for _, d := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "compute-root-"), "-")
		if _, err := strconv.Atoi(owner); err != nil || owner == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + owner); err != nil {
			os.Remove(d)
		}
	}
}

// unixPair makes a connected pair of unix sockets of the given type: ours
// as a connection, theirs as a file to hand to the agent.
func unixPair(typ int) (ours *net.UnixConn, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("local: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "socket")
	theirs = os.NewFile(uintptr(fds[1]), "socket")
	c, err := net.FileConn(mine) // a dup; ours is closed below
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("local: %w", err)
	}
	return c.(*net.UnixConn), theirs, nil
}
