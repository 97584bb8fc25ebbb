//go:build linux

package local

// Starting a sandbox's agent: the clone into new namespaces, the cgroup
// that limits it, and the configuration handshake. What runs in the
// sandbox is package agent; the messages are package agentproto. The
// agent is the small program package agentbin embeds, or, where that
// cannot run, this program re-executed: importing package agent (as this
// file does) installs the init that turns such a process into the agent
// before main runs.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agent"
	"github.com/computesdk-go/compute/local/internal/agentbin"
	"github.com/computesdk-go/compute/local/internal/agentproto"
	"github.com/computesdk-go/compute/local/internal/seccompfilter"
)

// hardening turns the kernel confinement (seccomp, Landlock, capabilities)
// and cgroup limits on. Only the benchmarks that measure their cost turn it
// off (export_linux_test.go).
var hardening = true

func checkSupport(opts Options) error {
	if opts.Isolation == IsolationNone {
		return nil
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && string(b) == "0\n" {
		return errors.New("local: user namespaces are disabled on this machine (/proc/sys/user/max_user_namespaces is 0); enable them, or use local.Options{Isolation: local.IsolationNone} to run unisolated, trusted code only")
	}
	return nil
}

// allCaps lists every capability this kernel knows: the agent keeps them,
// in the sandbox's user namespace only, across the exec that starts it as
// agentUID.
func allCaps() []uintptr {
	var caps []uintptr
	for c := 0; c <= agent.LastCap(); c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}

// startAgent starts a sandbox up to the point where it can run commands,
// without anything of a particular Create: that is bound by activate. The
// split lets the provider start sandboxes ahead of demand (Prestart).
//
// With img, the root is the image's (image_linux.go); the sandbox holds
// img from then on and releases it at its end, while a failed start
// leaves it to the caller.
func startAgent(p *Provider, network bool, gpus []string, img *sandboxImage) (*sandbox, error) {
	return startAgentFor(p, network, gpus, img, nil)
}

// startAgentFor is startAgent for a sandbox started for the Create bind
// (nil: ahead of demand), whose settings then go with the configuration.
func startAgentFor(p *Provider, network bool, gpus []string, img *sandboxImage, bind *binding) (*sandbox, error) {
	user, err := img.runAs() // image_user_linux.go
	if err != nil {
		return nil, err
	}
	s, err := launchAgentAs(p, network, gpus, false, user)
	if err != nil {
		return nil, err
	}
	s.bindAtStart = bind
	if err := s.buildRoot(img); err != nil {
		s.destroy()
		return nil, err
	}
	return s, nil
}

// testHookLimited, when set (tests), is called with the provider and the
// agent's pid once the agent is in its cgroup; its error fails the start
// there, as limit's would. Atomic: a start whose Create was cancelled
// may still run while a later test sets it.
var testHookLimited atomic.Pointer[func(p *Provider, agent int) error]

// setupTimeout bounds, in nanoseconds, the wait for an agent to finish
// its setup once configured (a minute, as agentReplyTimeout; tests
// shorten it). A burst of 50 on 2 CPUs takes about a second.
var setupTimeout atomic.Int64

func init() { setupTimeout.Store(int64(agentReplyTimeout)) }

// launchAgent starts a sandbox's agent, which then waits for its
// configuration (buildRoot). With forImage, the sandbox is started ahead
// of demand for an image not named yet: the agent is configured at once
// and prepares what needs no image (agentproto.ImageRoot.Later), and
// buildRoot sends the image.
//
// It takes the sandbox's share of the quota, prepares the namespaces and
// directories (prepare), starts the agent in them (clone) and puts it in
// its cgroup (limit). Until buildRoot, the agent waits: nothing of the
// caller's runs before the limits are in place.
//
// Its result is unnamed on purpose: the cleanups below use s, which a
// "return nil, err" would otherwise set to nil before they run.
//
// Its code runs as user, an image's USER (nil: the sandbox's root).
func launchAgentAs(p *Provider, network bool, gpus []string, forImage bool, user *imageUser) (_ *sandbox, err error) {
	s := &sandbox{p: p, network: network, exited: make(chan struct{})}
	var undo undo
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	if s.quota, err = p.quota.reserve(); err != nil {
		return nil, err
	}
	undo.add(s.quota.release)

	isolate := p.opts.Isolation == IsolationNamespaces
	s.cfg = agentproto.Config{
		GPUs:     gpus,
		Isolate:  isolate,
		Confine:  hardening,
		WorkDir:  WorkDir,
		Network:  network,
		DiskSize: p.opts.DiskSize,
		Hostname: "sandbox",
		Limits: agentproto.Limits{
			Procs:    uint64(p.opts.MaxProcesses),
			Files:    uint64(p.opts.MaxOpenFiles),
			FileSize: uint64(p.opts.MaxFileSize),
		},
	}
	s.cfg.User = user.proto()
	if isolate {
		s.cfg.Etc = etcEntries()
		if hardening {
			if s.cfg.Seccomp, err = seccompfilter.Programs(); err != nil {
				return nil, fmt.Errorf("local: assembling the seccomp filters: %w", err)
			}
		}
	}
	attr, err := s.prepare(&s.cfg, &undo)
	if err != nil {
		return nil, err
	}
	agentEnd, err := s.clone(attr, &undo)
	if err != nil {
		return nil, err
	}
	// The host holds the agent's end until the handshake is over: an agent
	// that dies during setup is seen by watch, which closes ours.
	s.agentEnd = agentEnd
	undo.add(func() { agentEnd.Close() })
	if err := s.limit(&s.cfg, gpus, &undo); err != nil {
		return nil, err
	}
	if hook := testHookLimited.Load(); hook != nil {
		if err := (*hook)(p, s.agent.Pid()); err != nil {
			return nil, err
		}
	}
	s.watching = true
	go s.watch()
	if forImage {
		s.cfg.Image = &agentproto.ImageRoot{Later: true}
		b, _ := json.Marshal(&s.cfg)
		if _, err := s.ctl.Write(b); err != nil {
			return nil, fmt.Errorf("local: configure sandbox agent: %w", err)
		}
	}
	return s, nil
}

// buildRoot has a launched agent build its root, the host's system or
// img's, and waits until it is ready to run commands. A failure leaves
// the sandbox to the caller to destroy.
func (s *sandbox) buildRoot(img *sandboxImage) error {
	defer s.agentEnd.Close() // release may close it too: Close is safe to repeat
	cfg := &s.cfg
	var layers []int
	if img != nil {
		if err := s.checkUser(img); err != nil { // image_user_linux.go
			return err
		}
		cfg.Env = img.env(cfg.Env)
		var mounts bool
		var err error
		if layers, mounts, err = layerFiles(img, s.agent.Pid()); err != nil {
			return err
		}
		// layers as they are at the end: the branch below closes them
		// early, and closing the same numbers twice would close what other
		// goroutines opened meanwhile (a command's pipe, a terminal).
		defer func() { closeFDs(layers) }()
		cfg.Image = &agentproto.ImageRoot{Layers: len(layers), Mounts: mounts, Capture: img.capture}
		s.layerIDs = nil
		for _, fd := range layers {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return fmt.Errorf("local: image %s: %w", img.ref, err)
			}
			s.layerIDs = append(s.layerIDs, fileID{uint64(st.Dev), st.Ino})
		}
		if !mounts {
			// Directories of the caller's: the agent, the caller's uid
			// too, binds them by path (a descriptor's mount is of the
			// host's mount namespace, which a bind may not take from).
			for i := len(img.im.Layers) - 1; i >= 0; i-- {
				cfg.Image.Dirs = append(cfg.Image.Dirs, img.im.Layers[i].Dir)
			}
			closeFDs(layers)
			layers = nil
		}
	}
	if bind := s.bindAtStart; bind != nil {
		s.bindAtStart = nil
		cfg.Init = s.bind(bind.id, bind.opts, img)
	}
	if err := s.configure(cfg, layers); err != nil {
		return err
	}
	if img != nil {
		s.setImage(img)
		s.limits = append(s.limits, fmt.Sprintf("root: image %s (%s), its layers read-only under a writable layer in the sandbox's disk", img.ref, shortImageID(img.im.ID)))
	}
	return nil
}

func shortImageID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// undo is what a failed start takes back, in the order it was done.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for _, f := range u {
		f()
	}
}

// prepare sets up what the agent is started in: with isolation, the new
// namespaces, the host uid (and gid) its user namespace maps to, and the
// empty staging directory its root is built on; without, a host
// directory to work in. It fills in cfg's directories and environment.
func (s *sandbox) prepare(cfg *agentproto.Config, undo *undo) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if cfg.Isolate {
		attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC // cgroup: ownCgroupNamespace, once in its cgroup
		if !cfg.Network {
			attr.Cloneflags |= syscall.CLONE_NEWNET
		}
		if err := mapIDs(attr, cfg); err != nil { // idmap_linux.go
			return nil, err
		}
		// The root is built on an empty host directory the agent can
		// reach; it is removed as soon as the agent has pivoted away.
		staging, err := os.MkdirTemp("", stagingPrefix())
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		undo.add(func() { os.Remove(staging) })
		if err := os.Chmod(staging, 0o711); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		cfg.Staging = staging
		s.staging = staging
		cfg.Dir = WorkDir
		s.workDir = WorkDir
	} else {
		dir, err := os.MkdirTemp("", "compute-sandbox-")
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		undo.add(func() { os.RemoveAll(dir) })
		s.hostDir = dir
		cfg.Dir = dir
		s.workDir = dir
	}
	cfg.Env = baseEnv(s.workDir)
	return attr, nil
}

// selfAgent is this program, which is the agent too (it imports the
// agent's package): what starts where no embedded agent can be run.
const selfAgent = "/proc/self/exe"

// embeddedRefused is set once the kernel refused to run the embedded
// agent and this program ran as the agent instead; later sandboxes go
// straight to this program.
var embeddedRefused atomic.Bool

// prepareAgent does ahead what the first sandbox's start would
// otherwise wait for: the agent program and the seccomp filters.
func prepareAgent() {
	agentPath()
	seccompfilter.Programs()
}

// agentPath is the program clone starts as a sandbox's agent: the small
// static program embedded in package agentbin, which starts in a
// fraction of the time this program takes (no dynamic loader, no
// initialisers of packages the agent does not use), or this program
// where there is none for the architecture or the kernel refused it.
func agentPath() string {
	if embeddedRefused.Load() || noEmbeddedAgent.Load() {
		return selfAgent
	}
	if p := testAgentProgram.Load(); p != nil {
		return *p
	}
	if path, err := agentbin.Path(); err == nil {
		return path
	}
	return selfAgent
}

// noEmbeddedAgent is set only in tests whose agent must be built from the
// sources of the day (the embedded one is out of date).
var noEmbeddedAgent atomic.Bool

// testAgentProgram, set by tests only, replaces the embedded program.
var testAgentProgram atomic.Pointer[string]

// clone starts the agent: the embedded agent program (or this program
// again: agentPath), with attr's namespaces and
// credentials, and the agent's end of a new control socket, which it
// returns for the caller to close once the agent is set up. The agent
// waits for its configuration.
func (s *sandbox) clone(attr *syscall.SysProcAttr, undo *undo) (agentEnd *os.File, err error) {
	ctl, agentEnd, err := unixPair(unix.SOCK_SEQPACKET)
	if err != nil {
		return nil, err
	}
	s.ctl = ctl
	undo.add(func() { s.ctl.Close() })

	path := agentPath()
	err = errNoLauncher
	if path != selfAgent && attr.Cloneflags&syscall.CLONE_NEWUSER != 0 {
		// An isolated agent of the embedded program: the launcher's to
		// start, once it runs (launcher_linux.go).
		s.agent, err = theLauncher.launch(path, attr, agentEnd)
	}
	if err == errNoLauncher {
		err = s.startDirect(path, attr, agentEnd)
	}
	if err != nil {
		agentEnd.Close()
		return nil, fmt.Errorf("local: start sandbox agent: %w%s", err, startHint(err))
	}
	undo.add(func() {
		s.agent.Kill()
		// Until watch runs (launchAgentAs starts it once the agent is in
		// its cgroup), nothing else waits for the agent: a start that
		// failed before then (out of descriptors for the cgroup's files)
		// waited here for good.
		if s.watching {
			<-s.exited
		} else {
			s.agent.Wait()
		}
	})
	return agentEnd, nil
}

// startDirect starts the agent program at path as a child of this
// process, or where the kernel will not run it, this program.
func (s *sandbox) startDirect(path string, attr *syscall.SysProcAttr, agentEnd *os.File) error {
	start := func(path string) error {
		cmd := &exec.Cmd{
			Path:        path,
			Args:        []string{agentproto.Arg0},
			Env:         []string{agentproto.Env},
			ExtraFiles:  []*os.File{agentEnd}, // agentproto.ControlFD
			SysProcAttr: attr,
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		s.agent = childAgent{cmd}
		return nil
	}
	err := start(path)
	if err != nil && path != selfAgent {
		// The kernel may refuse to execute a memory file (a policy
		// such as vm.memfd_noexec=2 or an LSM): this program is the
		// agent too. What fails for both is reported for this one. A
		// refusal is remembered; another failure (out of processes, for
		// one) is not held against the embedded program.
		refused := errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOEXEC)
		if err = start(selfAgent); err == nil && refused {
			embeddedRefused.Store(true)
		}
	}
	return err
}

// limit puts the agent in a cgroup of its own with the sandbox's resource
// limits, before the agent runs anything of the caller's, or where
// cgroups are unavailable sets cfg's rlimits in their place; and it lists
// every limit, for Info.
func (s *sandbox) limit(cfg *agentproto.Config, gpus []string, undo *undo) error {
	p := s.p
	lim := resourceLimits{memory: p.opts.MaxMemory, pids: int64(p.opts.MaxProcesses), cpus: p.opts.MaxCPU}
	cgErr := errors.New("not isolated")
	if cfg.Isolate && hardening {
		s.cg, cgErr = newCgroup(newID(), lim)
	}
	if s.cg != nil {
		undo.add(func() { s.cg.remove() })
		if err := s.cg.add(s.agent.Pid()); err != nil {
			return fmt.Errorf("local: add sandbox to its cgroup: %w", err)
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
	if cfg.Isolate {
		s.limits = append(s.limits, fmt.Sprintf("disk %s for all files written, %s and /tmp included (tmpfs, counted in memory)", bytesString(p.opts.DiskSize), WorkDir))
		if cfg.Network {
			s.limits = append(s.limits, "network: host")
		}
	} else {
		s.limits = append(s.limits, "isolation: NONE (plain host processes)")
	}
	return nil
}

// watch waits for the agent to exit. One that died on its own (killed,
// out of memory) is gone from the provider, its host resources freed, its
// status "error".
func (s *sandbox) watch() {
	s.agent.Wait()
	close(s.exited)
	s.mu.Lock()
	gone := s.destroyed
	s.mu.Unlock()
	if !gone {
		s.p.forget(s)
		s.release()
	}
}

// configure hands the agent its configuration and waits for it to be
// ready: the configuration handshake (see agentproto).
func (s *sandbox) configure(cfg *agentproto.Config, layers []int) error {
	b, _ := json.Marshal(cfg)
	if cfg.Init != nil && len(b) > agentproto.MaxConfig {
		// A Create's environment too large to go along: activate sends
		// it in an operation of its own, as to a prestarted sandbox.
		cfg.Init = nil
		b, _ = json.Marshal(cfg)
	}
	var oob []byte
	if len(layers) > 0 {
		oob = unix.UnixRights(layers...)
	}
	if _, _, err := s.ctl.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("local: configure sandbox agent: %w", err)
	}
	bufp := replyBuffers.Get().(*[]byte) // a Reply
	defer replyBuffers.Put(bufp)
	buf := *bufp
	// With the reply, an image build step's writable layer (takeUpper).
	oob = make([]byte, unix.CmsgSpace(4))
	// An agent that never finishes its setup (stopped, stuck in the
	// kernel) fails the start rather than hang it; the caller destroys
	// the sandbox, which kills the agent.
	limit := time.Duration(setupTimeout.Load())
	s.ctl.SetReadDeadline(time.Now().Add(limit))
	n, oobn, _, _, err := s.ctl.ReadMsgUnix(buf, oob)
	s.ctl.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("local: the sandbox's agent did not finish its setup within %v", limit)
	}
	if err != nil {
		return fmt.Errorf("local: sandbox agent exited during setup (%v)%s", err, startHint(err))
	}
	var rep agentproto.Reply
	if err := json.Unmarshal(buf[:n], &rep); err != nil || !rep.Done {
		msg := rep.Err
		if msg == "" {
			msg = fmt.Sprintf("unexpected reply %q", buf[:n])
		}
		return fmt.Errorf("local: sandbox setup failed: %s", msg)
	}
	if err := s.takeUpper(cfg, oob[:oobn]); err != nil {
		return err
	}
	if cfg.Staging != "" {
		os.Remove(cfg.Staging)
	}
	if cfg.Init != nil {
		s.initDone, s.initErr = true, rep.InitErr
	}
	s.limits = append(s.limits, rep.Enforced...)
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
		return nil, fmt.Errorf("local: GPU %q requested, but this machine has no NVIDIA GPU (no /dev/nvidia* devices); use a provider with GPUs (modal): %w", request, driver.ErrUnsupported)
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

// replyBuffers hold the agent's answer to its configuration: a datagram of
// up to 64 KiB, which a fresh buffer for every sandbox would have zeroed
// and faulted in (5% of the host's CPU time when 50 start at once).
var replyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<16); return &b }}

// etcCache holds agent.EtcEntries.
var etcCache struct {
	sync.Mutex
	list []string
	at   time.Time
}

// etcEntries is agent.EtcEntries, resolved at most once a minute rather
// than by every agent: which entries exist changes only as packages come
// and go (their contents are copied for each sandbox all the same), and an
// entry gone since is skipped by the agent.
func etcEntries() []string {
	etcCache.Lock()
	defer etcCache.Unlock()
	if etcCache.list == nil || time.Since(etcCache.at) > time.Minute {
		etcCache.list, etcCache.at = agent.EtcEntries(), time.Now()
	}
	return etcCache.list
}
