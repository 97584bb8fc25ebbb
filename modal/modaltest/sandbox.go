package modaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
)

// Sandbox states, as SandboxRecord.Status reports them.
const (
	statusRunning     = "running"
	statusCompleted   = "completed"
	statusTerminated  = "terminated"
	statusTimeout     = "timeout"
	statusIdleTimeout = "idle-timeout"
)

// sandboxMargin is how much longer than its Modal timeout the provider's
// sandbox may live: the emulator ends it itself, with the right status.
const sandboxMargin = time.Minute

// sandbox is one Modal sandbox and the provider sandbox that runs it.
type sandbox struct {
	s         *Server
	id        string
	taskID    string
	v2        bool
	app       *app
	img       *image
	def       *pb.Sandbox
	env       map[string]string
	created   time.Time
	createdAt float64 // seconds, unique per server
	timeout   time.Duration
	idle      time.Duration

	// ctx lives as long as the sandbox runs; its processes use it.
	ctx    context.Context
	cancel context.CancelFunc

	// The entrypoint's stdio (empty without a command).
	stdout, stderr *output
	stdin          *input
	// V1 stdin writes carry an index from 1; stdinMu orders them.
	stdinMu    sync.Mutex
	stdinIndex uint32

	guestOnce sync.Mutex
	guestPath string
	// execStart orders exec starts (they are idempotent on exec id);
	// snapMu orders snapshots (idempotent on snapshot id).
	execStart sync.Mutex
	snapMu    sync.Mutex

	// entry is the entrypoint process, nil without a command or before it
	// started.
	entry *process

	mu         sync.Mutex
	cs         *compute.Sandbox
	name       string
	tags       map[string]string
	result     *pb.GenericResult
	status     string
	finishedAt time.Time
	done       chan struct{} // closed when the result is set
	torn       chan struct{} // closed when the teardown is over
	execs      map[string]*process
	execCount  int
	busy       int
	lastActive time.Time
	timer      *time.Timer
	idleTimer  *time.Timer
	tunnels    []*tunnel
	snapshots  map[string]string // snapshot id -> image id
	readyAt    float64
	// gpuAttached is true when the provider gave the sandbox the host's
	// GPUs.
	gpuAttached bool
	// proxy serves connect tokens, once one was asked for.
	proxy *connectProxy
	// network is the outbound policy, as created or as last set.
	network *pb.NetworkAccess
	// mounts are the directories TaskMountDirectory filled, each with
	// where the directory it hid was moved ("" for none).
	mountMu sync.Mutex
	mounts  map[string]string
}

func terminatedResult() *pb.GenericResult {
	return pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_TERMINATED, Exitcode: 137}.Build()
}

// running reports whether the sandbox has not finished.
func (sb *sandbox) running() bool {
	select {
	case <-sb.done:
		return false
	default:
		return true
	}
}

func (sb *sandbox) resultNow() *pb.GenericResult {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.result
}

func (sb *sandbox) record() SandboxRecord {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	def := sb.def
	res := def.GetResources()
	r := SandboxRecord{
		ID: sb.id, TaskID: sb.taskID, AppID: sb.app.id, V2: sb.v2, Name: sb.name,
		ImageID: sb.img.id, Image: sb.img.tag, DockerfileCommands: slices.Clone(sb.img.commands),
		MilliCPU: res.GetMilliCpu(), MilliCPUMax: res.GetMilliCpuMax(),
		MemoryMiB: res.GetMemoryMb(), MemoryMiBMax: res.GetMemoryMbMax(),
		Timeout: sb.timeout, IdleTimeout: sb.idle,
		Workdir: def.GetWorkdir(), Command: slices.Clone(def.GetEntrypointArgs()),
		Env: maps.Clone(sb.env), Tags: maps.Clone(sb.tags),
		BlockNetwork: blocksNetwork(def), Runtime: def.GetRuntime(),
		Network:         networkMode(def.GetBlockNetwork(), sb.network),
		OutboundCIDRs:   slices.Clone(sb.network.GetAllowedCidrs()),
		OutboundDomains: slices.Clone(sb.network.GetAllowedDomains()),
		CreatedAt:       sb.created, FinishedAt: sb.finishedAt, Status: sb.status,
		Execs: sb.execCount,
	}
	r.GPU = gpuString(res.GetGpuConfig())
	r.GPUAttached = sb.gpuAttached
	for _, p := range def.GetOpenPorts().GetPorts() {
		switch {
		case p.GetUnencrypted():
			r.UnencryptedPorts = append(r.UnencryptedPorts, int(p.GetPort()))
		case p.GetTunnelType() == pb.TunnelType_TUNNEL_TYPE_H2:
			r.H2Ports = append(r.H2Ports, int(p.GetPort()))
		default:
			r.EncryptedPorts = append(r.EncryptedPorts, int(p.GetPort()))
		}
	}
	if code := exitCode(sb.result); code != nil {
		r.ExitCode = *code
	}
	if sb.cs != nil {
		r.LocalID = sb.cs.ID()
	}
	return r
}

// exitCode is the SDK's reading of a result (getReturnCode).
func exitCode(res *pb.GenericResult) *int {
	if res == nil || res.GetStatus() == pb.GenericResult_GENERIC_STATUS_UNSPECIFIED {
		return nil
	}
	var c int
	switch res.GetStatus() {
	case pb.GenericResult_GENERIC_STATUS_TIMEOUT:
		c = 124
	case pb.GenericResult_GENERIC_STATUS_TERMINATED:
		c = 137
	default:
		c = int(res.GetExitcode())
	}
	return &c
}

// gpuString is a GPU request in Modal's notation: "TYPE" or "TYPE:COUNT".
func gpuString(g *pb.GPUConfig) string {
	if g.GetGpuType() == "" {
		return ""
	}
	if g.GetCount() > 1 {
		return fmt.Sprintf("%s:%d", g.GetGpuType(), g.GetCount())
	}
	return g.GetGpuType()
}

func blocksNetwork(def *pb.Sandbox) bool {
	return networkMode(def.GetBlockNetwork(), def.GetNetworkAccess()) == "blocked"
}

// networkMode is "open", "blocked" or "allowlist".
func networkMode(block bool, na *pb.NetworkAccess) string {
	switch {
	case block || na.GetNetworkAccessType() == pb.NetworkAccess_BLOCKED:
		return "blocked"
	case na.GetNetworkAccessType() == pb.NetworkAccess_ALLOWLIST:
		return "allowlist"
	}
	return "open"
}

// createSandbox validates a definition, starts the sandbox and registers
// it. sources are V2's ordered secret sources (nil for V1).
func (s *Server) createSandbox(ctx context.Context, appID string, def *pb.Sandbox, tags []*pb.SandboxTag, sources []*pb.SecretSource, v2 bool) (*sandbox, error) {
	gpu := def.GetResources().GetGpuConfig()
	if v2 && gpu.GetGpuType() != "" {
		return nil, status.Error(codes.InvalidArgument, "GPUs are not supported by V2 sandboxes")
	}
	if w := def.GetWorkdir(); def.HasWorkdir() && !strings.HasPrefix(w, "/") {
		return nil, status.Errorf(codes.InvalidArgument, "workdir must be an absolute path, got: %q", w)
	}
	if err := validateDefinition(def); err != nil {
		return nil, err
	}
	img, err := s.imageByID(def.GetImageId())
	if err != nil {
		return nil, err
	}
	if img.result.GetStatus() != pb.GenericResult_GENERIC_STATUS_SUCCESS {
		return nil, status.Errorf(codes.FailedPrecondition, "Image %s failed to build", img.id)
	}
	env, err := s.resolveSecrets(def.GetSecretIds(), sources)
	if err != nil {
		return nil, err
	}
	for k, v := range img.env {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	timeout := time.Duration(def.GetTimeoutSecs()) * time.Second
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	now := time.Now()
	sb := &sandbox{
		s: s, v2: v2, img: img, def: def, env: env, created: now,
		taskID: newID("ta"), timeout: timeout,
		idle:   time.Duration(def.GetIdleTimeoutSecs()) * time.Second,
		stdout: newOutput(), stderr: newOutput(), stdin: newInput(),
		name: def.GetName(), tags: map[string]string{},
		done: make(chan struct{}), torn: make(chan struct{}),
		execs: map[string]*process{}, snapshots: map[string]string{}, mounts: map[string]string{},
		network:    def.GetNetworkAccess(),
		lastActive: now, status: statusRunning,
	}
	sb.ctx, sb.cancel = context.WithCancel(s.ctx)
	if v2 {
		sb.id = "sb-" + newULID(now)
	} else {
		sb.id = newID("sb")
	}
	for _, t := range tags {
		sb.tags[t.GetTagName()] = t.GetTagValue()
	}
	if def.GetIncludeOidcIdentityToken() {
		// An OIDC identity token, as Modal gives (signed by the emulator,
		// so verifiable by nobody else).
		sb.env["MODAL_IDENTITY_TOKEN"] = s.mintJWT(claims{Sub: "sandbox:" + sb.id, Kind: "oidc"}, timeout+sandboxMargin)
	}

	// Reserve: the quota and the name are checked and taken at once.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sb.cancel()
		return nil, status.Error(codes.Unavailable, "the server is shutting down")
	}
	a := s.apps[appID]
	if a == nil {
		s.mu.Unlock()
		sb.cancel()
		return nil, status.Errorf(codes.NotFound, "App '%s' not found", appID)
	}
	sb.app = a
	live := 0
	for _, o := range s.sandboxes {
		if !o.running() {
			continue
		}
		live++
		if sb.name != "" && o.app == a && o.currentName() == sb.name {
			s.mu.Unlock()
			sb.cancel()
			return nil, status.Errorf(codes.AlreadyExists, "Sandbox with name '%s' already exists in App '%s'", sb.name, a.name)
		}
	}
	if max := s.opts.MaxSandboxes; max > 0 && live >= max {
		s.mu.Unlock()
		sb.cancel()
		return nil, status.Errorf(codes.ResourceExhausted,
			"Sandbox limit reached: this workspace may run at most %d Sandboxes at once and %d are running. Terminate Sandboxes you no longer need, or ask Modal to raise the limit.", max, live)
	}
	sb.createdAt = s.nextCreatedAtLocked(now)
	s.sandboxes[sb.id] = sb
	s.tasks[sb.taskID] = sb
	s.mu.Unlock()

	if err := sb.start(ctx); err != nil {
		sb.finish(pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_INIT_FAILURE, Exception: err.Error()}.Build(), statusTerminated)
		s.mu.Lock()
		delete(s.sandboxes, sb.id)
		delete(s.tasks, sb.taskID)
		s.mu.Unlock()
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.FailedPrecondition, "the sandbox could not start: %v", err)
	}
	if g := gpuString(gpu); g != "" && !sb.gpuAttached {
		warn(ctx, fmt.Sprintf("Modal emulator: GPU %s was requested and recorded, but this machine has no GPU: the sandbox runs without one", g))
	}
	return sb, nil
}

func (sb *sandbox) currentName() string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.name
}

// start creates the provider's sandbox and everything the definition asks
// for: the files of a snapshot image, tunnels, the entrypoint, the timers.
func (sb *sandbox) start(ctx context.Context) error {
	s := sb.s
	c, err := s.computeFor(sb.def.GetResources())
	if err != nil {
		return err
	}
	dir := sb.def.GetWorkdir()
	if dir == "" {
		dir = sb.img.workdir
	}
	env := sandboxEnv(sb.env)
	if sb.img.rootImage != "" {
		// The image's own PATH and programs, as on Modal.
		env = maps.Clone(sb.env)
	}
	opts := &compute.CreateOptions{
		Timeout:  sb.timeout + sandboxMargin,
		Env:      env,
		Image:    sb.img.rootImage,
		Dir:      dir,
		Network:  compute.NetworkNone,
		Name:     sb.id,
		Metadata: map[string]string{"modal_sandbox_id": sb.id, "modal_task_id": sb.taskID},
		GPU:      gpuString(sb.def.GetResources().GetGpuConfig()),
	}
	// Outbound network only with Options.HostNetwork: all of it for an open
	// policy; for an allowlist, its domains on port 443 (Modal matches
	// domains by TLS server name), through the provider's filtering proxy.
	// Wildcard domains and CIDRs cannot be expressed there and allow
	// nothing: allowlists fail closed.
	if s.opts.HostNetwork {
		switch networkMode(sb.def.GetBlockNetwork(), sb.def.GetNetworkAccess()) {
		case "open":
			opts.Network = compute.NetworkHost
		case "allowlist":
			for _, d := range sb.def.GetNetworkAccess().GetAllowedDomains() {
				if !strings.HasPrefix(d, "*.") {
					opts.NetworkAllow = append(opts.NetworkAllow, net.JoinHostPort(d, "443"))
				}
			}
		}
	}
	cs, err := c.Create(ctx, opts)
	if errors.Is(err, compute.ErrUnsupported) && opts.GPU != "" {
		// No GPU here: the request stays recorded, the sandbox runs without.
		opts.GPU = ""
		cs, err = c.Create(ctx, opts)
	} else if err == nil && opts.GPU != "" {
		sb.mu.Lock()
		sb.gpuAttached = true
		sb.mu.Unlock()
	}
	if err != nil {
		return err
	}
	sb.mu.Lock()
	finished := sb.result != nil
	if !finished {
		sb.cs = cs
	}
	sb.mu.Unlock()
	if finished {
		cs.Destroy(context.Background())
		return status.Error(codes.Unavailable, "the server is shutting down")
	}
	if sb.img.rootImage == "" {
		prepare(ctx, cs)
	}
	if len(sb.img.files) > 0 {
		if err := sb.restore("/", sb.img.files); err != nil {
			return fmt.Errorf("restoring the files of image %s: %w", sb.img.id, err)
		}
	}
	for _, p := range sb.def.GetOpenPorts().GetPorts() {
		t, err := newTunnel(sb, p)
		if err != nil {
			return err
		}
		sb.mu.Lock()
		sb.tunnels = append(sb.tunnels, t)
		sb.mu.Unlock()
	}
	if argv := sb.def.GetEntrypointArgs(); len(argv) > 0 {
		p, err := sb.startProcess(execSpec{
			argv: argv, stdout: sb.stdout, stderr: sb.stderr, stdin: sb.stdin,
			pty: sb.def.GetPtyInfo(), entrypoint: true,
		})
		if err != nil {
			return err
		}
		sb.mu.Lock()
		sb.entry = p
		sb.mu.Unlock()
		s.goBackground(func() {
			<-p.done
			if s.ctx.Err() != nil {
				// The server is closing, which is what killed the command:
				// the sandbox was terminated, whichever of the two ends
				// gets here first.
				sb.finish(terminatedResult(), statusTerminated)
				return
			}
			res := pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS, Exitcode: int32(p.code)}
			if p.code != 0 {
				res.Status = pb.GenericResult_GENERIC_STATUS_FAILURE
				res.Exception = fmt.Sprintf("the command exited with code %d", p.code)
			}
			sb.finish(res.Build(), statusCompleted)
		})
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.result == nil {
		sb.timer = time.AfterFunc(sb.timeout, func() {
			sb.finish(pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_TIMEOUT, Exception: "Sandbox timed out"}.Build(), statusTimeout)
		})
		if sb.idle > 0 {
			sb.idleTimer = time.AfterFunc(sb.idle, sb.checkIdle)
		}
	}
	return nil
}

// finish ends the sandbox with res (the first result wins) and tears it
// down: tunnels closed, processes killed, the provider's sandbox destroyed.
// It returns when the teardown is over, whoever started it.
func (sb *sandbox) finish(res *pb.GenericResult, why string) {
	sb.mu.Lock()
	if sb.result != nil {
		sb.mu.Unlock()
		<-sb.torn
		return
	}
	sb.result = res
	sb.status = why
	sb.finishedAt = time.Now()
	close(sb.done)
	if sb.timer != nil {
		sb.timer.Stop()
	}
	if sb.idleTimer != nil {
		sb.idleTimer.Stop()
	}
	tunnels := sb.tunnels
	cs := sb.cs
	entry := sb.entry
	proxy := sb.proxy
	sb.mu.Unlock()

	defer close(sb.torn)
	for _, t := range tunnels {
		t.close()
	}
	if proxy != nil {
		proxy.close()
	}
	sb.cancel()
	if cs != nil {
		if err := cs.Destroy(context.Background()); err != nil {
			sb.s.log.Warn("destroying a sandbox", "sandbox_id", sb.id, "error", err)
		}
	}
	sb.stdin.kill()
	if entry == nil {
		sb.stdout.Close()
		sb.stderr.Close()
	}
	sb.s.pruneFinished()
}

// pruneFinished forgets the oldest finished sandboxes beyond MaxFinished.
func (s *Server) pruneFinished() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []*sandbox
	for _, sb := range s.sandboxes {
		if !sb.running() {
			done = append(done, sb)
		}
	}
	extra := len(done) - s.opts.MaxFinished
	if extra <= 0 {
		return
	}
	sort.Slice(done, func(i, j int) bool { return done[i].createdAt < done[j].createdAt })
	for _, sb := range done[:extra] {
		delete(s.sandboxes, sb.id)
		delete(s.tasks, sb.taskID)
	}
}

// touch records activity, for the idle timeout.
func (sb *sandbox) touch() {
	sb.mu.Lock()
	sb.lastActive = time.Now()
	sb.mu.Unlock()
}

// hold marks an activity in progress (an exec, a tunnel connection);
// release ends it.
func (sb *sandbox) hold() {
	sb.mu.Lock()
	sb.busy++
	sb.lastActive = time.Now()
	sb.mu.Unlock()
}

func (sb *sandbox) release() {
	sb.mu.Lock()
	sb.busy--
	sb.lastActive = time.Now()
	sb.mu.Unlock()
}

func (sb *sandbox) checkIdle() {
	sb.mu.Lock()
	if sb.result != nil {
		sb.mu.Unlock()
		return
	}
	idleFor := time.Since(sb.lastActive)
	if sb.busy > 0 || idleFor < sb.idle {
		wait := sb.idle - idleFor
		if sb.busy > 0 || wait <= 0 {
			wait = sb.idle
		}
		sb.idleTimer.Reset(wait)
		sb.mu.Unlock()
		return
	}
	sb.mu.Unlock()
	sb.finish(pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_IDLE_TIMEOUT, Exception: "Sandbox was idle for too long"}.Build(), statusIdleTimeout)
}

// sandbox looks a sandbox up by id.
func (s *Server) sandbox(id string) (*sandbox, error) {
	s.mu.Lock()
	sb := s.sandboxes[id]
	s.mu.Unlock()
	if sb == nil {
		return nil, status.Errorf(codes.NotFound, "Sandbox '%s' not found", id)
	}
	return sb, nil
}

// task looks a sandbox up by task id.
func (s *Server) task(id string) (*sandbox, error) {
	s.mu.Lock()
	sb := s.tasks[id]
	s.mu.Unlock()
	if sb == nil {
		return nil, status.Errorf(codes.NotFound, "Task '%s' not found", id)
	}
	return sb, nil
}

// restore extracts a tar into the sandbox under dir.
func (sb *sandbox) restore(dir string, files []byte) error {
	var stderr bytes.Buffer
	code, err := sb.runGuest(sb.ctx, "restore", []string{dir}, bytes.NewReader(files), nil, &stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// warn attaches a warning to the response, which the SDK logs once.
func warn(ctx context.Context, msg string) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-modal-warning", url.PathEscape(msg)))
}
