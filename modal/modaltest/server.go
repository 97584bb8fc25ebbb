// Package modaltest is a local server that speaks Modal's gRPC protocol,
// so that code written against Modal's official Go SDK
// (github.com/modal-labs/modal-client/go) runs offline and in CI,
// unchanged. It serves the control plane (modal.client.ModalClient) and the
// task command router (modal.task_command_router.TaskCommandRouter) on one
// loopback port, and runs the sandboxes on this machine through a compute
// provider (package local by default).
//
// Use it like net/http/httptest:
//
//	srv, err := modaltest.NewServer(modaltest.Options{})
//	if err != nil { ... }
//	defer srv.Close()
//	for _, kv := range srv.Env() { // MODAL_SERVER_URL, MODAL_TOKEN_ID, MODAL_TOKEN_SECRET
//		k, v, _ := strings.Cut(kv, "=")
//		os.Setenv(k, v)
//	}
//	client, err := modal.NewClient()
//
// What it emulates, and how faithfully, is described in the README's
// "Modal emulator" section. In short: apps, environments, registry images
// (their files from this machine's image store when Options.ImageFiles
// allows, else the host system's programs), secrets, V1 and
// V2 sandboxes with their whole lifecycle, exec with stdio and stdin
// streaming, PTY execs on real pseudo-terminals (pty_info's size and
// TERM), the filesystem tool protocol, tags, names, listing, tunnels,
// readiness probes and filesystem snapshots. The server records every RPC
// and every sandbox for tests to inspect, and can inject latency and faults
// per RPC method.
package modaltest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"sync"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	_ "github.com/computesdk-go/compute/modal/modaltest/internal/guest" // runs the guest modes when this program is started as one
)

// Defaults for Options' zero values.
const (
	DefaultListPageSize        = 100
	DefaultTokenTTL            = time.Hour
	DefaultImageBuilderVersion = "2025.06"
	// maxMessageSize matches the SDK's 100 MB limit in both directions.
	maxMessageSize = 100 * 1000 * 1000
	windowSize     = 64 << 20
)

// Options configures a Server. The zero value is a server on a free
// loopback port with a fresh random token pair, running sandboxes on a
// local provider with default options.
type Options struct {
	// Addr is the address to listen on; "127.0.0.1:0" when empty. The SDK
	// talks to the command router in plaintext only when MODAL_SERVER_URL
	// names a loopback host, so this should be a loopback address.
	Addr string
	// TokenID and TokenSecret are the credentials the server accepts;
	// random ones ("ak-…", "as-…") when empty.
	TokenID, TokenSecret string
	// Provider runs the sandboxes. nil means a local provider created with
	// Local and closed by Close; a Provider given here is not closed.
	Provider driver.Provider
	// Local configures the local provider when Provider is nil. Its
	// ImageStore and ImagePull are also where the emulator finds and
	// pulls the images of ImageFiles (nil: the store at
	// imagestore.DefaultDir(), imagestore's default pulls).
	Local local.Options
	// ImageFiles says whether sandboxes of a registry image (FROM alone,
	// as Images.FromRegistry makes) see the image's files, so that a
	// program tested offline sees what it will see on Modal: images from
	// the store (ImageFilesCached) or also pulled (ImageFilesPull). The
	// zero value, ImageFilesHost, runs every sandbox on this machine's
	// programs. An image the server cannot get, an image with Dockerfile
	// commands and a server with Options.Provider run on this machine's
	// programs too; the log says so, image by image.
	ImageFiles ImageFiles
	// Latency delays every RPC of both services before it is handled, to
	// make round trips visible as they are against Modal's cloud.
	Latency time.Duration
	// MaxSandboxes caps the sandboxes alive at once: past it
	// SandboxCreate and SandboxCreateV2 fail with ResourceExhausted, as
	// Modal does when a workspace is at its limit. 0 means no cap.
	MaxSandboxes int
	// ListPageSize is how many sandboxes one SandboxList/SandboxListV2
	// page holds (DefaultListPageSize when 0).
	ListPageSize int
	// AuthTokenTTL and RouterTokenTTL are the lifetimes of the
	// control-plane and command-router JWTs (DefaultTokenTTL when 0). Short
	// ones make the SDK refresh them.
	AuthTokenTTL, RouterTokenTTL time.Duration
	// ImageBuilderVersion is what EnvironmentGetOrCreate reports
	// (DefaultImageBuilderVersion when empty).
	ImageBuilderVersion string
	// HostNetwork gives sandboxes created without BlockNetwork the host's
	// network. By default every sandbox has only its own loopback, so
	// tests behave the same with and without a network.
	HostNetwork bool
	// Secrets are named secrets (Secrets.FromName), by name, present in
	// every environment from the start.
	Secrets map[string]map[string]string
	// MaxCalls bounds the RPCs Calls remembers (at least the newest
	// MaxCalls are kept); 0 means 100000.
	MaxCalls int
	// MaxFinished bounds the finished sandboxes kept, with their output,
	// for reads, FromName with IncludeTerminated and Sandboxes; the oldest
	// are forgotten first. 0 means 1000.
	MaxFinished int
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the value for MODAL_SERVER_URL: "http://127.0.0.1:PORT".
	URL string
	// Addr is the host:port the server listens on.
	Addr string
	// TokenID and TokenSecret are the accepted credentials.
	TokenID, TokenSecret string

	opts      Options
	log       *slog.Logger
	lis       net.Listener
	grpc      *grpc.Server
	serveDone chan struct{}
	provider  driver.Provider
	compute   *compute.Compute
	ownProv   io.Closer
	// limited are local providers for sandboxes with CPU or memory
	// limits, by limits (made only when the server owns its provider).
	limitMu   sync.Mutex
	limited   map[limits]*limitedProvider
	routerURL string
	jwtKey    []byte
	tunnelTLS *tunnelTLS
	guest     *guestBinary
	idem      *idempotencyCache
	faults    faultSet
	buildMu   sync.Mutex
	// terminalsOnce warns once that the provider has no terminals.
	terminalsOnce sync.Once

	// ctx is cancelled by Close; background work of the server uses it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	calls       []*Call
	envs        map[string]*environment
	apps        map[string]*app
	appsByName  map[appKey]*app
	images      map[string]*image
	imageByDef  map[string]string
	secrets     map[string]*secret
	named       map[appKey]*secret
	sandboxes   map[string]*sandbox
	tasks       map[string]*sandbox
	lastCreated float64
}

// NewServer starts a server. Close it to stop it and destroy every
// sandbox it runs.
func NewServer(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ListPageSize <= 0 {
		opts.ListPageSize = DefaultListPageSize
	}
	if opts.AuthTokenTTL <= 0 {
		opts.AuthTokenTTL = DefaultTokenTTL
	}
	if opts.RouterTokenTTL <= 0 {
		opts.RouterTokenTTL = DefaultTokenTTL
	}
	if opts.MaxCalls <= 0 {
		opts.MaxCalls = 100000
	}
	if opts.MaxFinished <= 0 {
		opts.MaxFinished = 1000
	}
	if opts.ImageBuilderVersion == "" {
		opts.ImageBuilderVersion = DefaultImageBuilderVersion
	}
	if opts.MaxSandboxes < 0 || opts.Latency < 0 {
		return nil, errors.New("modaltest: negative MaxSandboxes or Latency")
	}
	s := &Server{
		opts:        opts,
		log:         opts.Logger,
		TokenID:     opts.TokenID,
		TokenSecret: opts.TokenSecret,
		serveDone:   make(chan struct{}),
		idem:        newIdempotencyCache(4096),
		envs:        map[string]*environment{},
		apps:        map[string]*app{},
		appsByName:  map[appKey]*app{},
		images:      map[string]*image{},
		imageByDef:  map[string]string{},
		secrets:     map[string]*secret{},
		named:       map[appKey]*secret{},
		sandboxes:   map[string]*sandbox{},
		tasks:       map[string]*sandbox{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.TokenID == "" {
		s.TokenID = newID("ak")
	}
	if s.TokenSecret == "" {
		s.TokenSecret = newID("as")
	}
	s.jwtKey = make([]byte, 32)
	rand.Read(s.jwtKey)
	for name, env := range opts.Secrets {
		s.addNamedSecret(anyEnvironment, name, env)
	}

	var err error
	if s.tunnelTLS, err = newTunnelTLS(); err != nil {
		return nil, err
	}
	if s.guest, err = newGuestBinary(); err != nil {
		return nil, err
	}
	s.openImageStore()
	s.provider = opts.Provider
	if s.provider == nil {
		p, err := local.New(s.opts.Local)
		if err != nil {
			return nil, fmt.Errorf("modaltest: %w", err)
		}
		s.provider, s.ownProv = p, p
	}
	s.compute = compute.New(compute.Config{Provider: s.provider})

	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.closeProvider()
		return nil, fmt.Errorf("modaltest: %w", err)
	}
	s.lis = lis
	s.Addr = lis.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		host = "127.0.0.1"
	}
	s.URL = (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}).String()
	s.routerURL = (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}).String()
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		// The SDK pings every 30 s, also without streams; grpc-go's default
		// policy (5 min) would answer with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.WaitForHandlers(true),
	)
	pb.RegisterModalClientServer(s.grpc, &controlPlane{s: s})
	pb.RegisterTaskCommandRouterServer(s.grpc, &router{s: s})
	go func() {
		defer close(s.serveDone)
		s.grpc.Serve(lis)
	}()
	return s, nil
}

// Env returns the environment variables that point Modal's SDK at the
// server, as KEY=value: MODAL_SERVER_URL, MODAL_TOKEN_ID and
// MODAL_TOKEN_SECRET.
func (s *Server) Env() []string {
	return []string{
		"MODAL_SERVER_URL=" + s.URL,
		"MODAL_TOKEN_ID=" + s.TokenID,
		"MODAL_TOKEN_SECRET=" + s.TokenSecret,
	}
}

// Close stops the server: it ends every RPC, destroys every sandbox and
// waits for all of its goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	list := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		list = append(list, sb)
	}
	s.mu.Unlock()

	s.cancel()
	s.grpc.Stop()
	<-s.serveDone
	var wg sync.WaitGroup
	for _, sb := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb.finish(terminatedResult(), statusTerminated)
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return s.closeProvider()
}

// closing is the error of a call answered while Close runs: Close
// cancels the server's context first (which ends the guests' commands)
// and only then closes the connections, and an exit status that the
// shutdown itself caused must not reach a client as the command's own.
// Modal's clients see a server that goes away as unavailable.
func (s *Server) closing() error {
	if s.ctx.Err() != nil {
		return status.Error(codes.Unavailable, "modaltest: the server is shutting down")
	}
	return nil
}

func (s *Server) closeProvider() error {
	var errs []error
	s.limitMu.Lock()
	for _, lp := range s.limited {
		errs = append(errs, lp.p.Close())
	}
	s.limited = nil
	s.limitMu.Unlock()
	if s.ownProv != nil {
		errs = append(errs, s.ownProv.Close())
	}
	return errors.Join(errs...)
}

// limits are a sandbox's CPU and memory caps, as the local provider
// enforces them (MaxCPU, MaxMemory).
type limits struct {
	milliCPU uint32
	memoryMB uint32
}

type limitedProvider struct {
	p *local.Provider
	c *compute.Compute
}

// computeFor returns where to run a sandbox with these resources. Modal's
// limits (CPULimit, MemoryLimitMiB) become the local provider's caps; a
// request alone raises a cap that would be below it. A Provider given in
// Options is used as it is: the resources are only recorded.
func (s *Server) computeFor(res *pb.Resources) (*compute.Compute, error) {
	if s.ownProv == nil {
		return s.compute, nil
	}
	defCPU := uint32(1000)
	if s.opts.Local.MaxCPU > 0 {
		defCPU = uint32(s.opts.Local.MaxCPU * 1000)
	}
	defMem := uint32(1024)
	if s.opts.Local.MaxMemory > 0 {
		defMem = uint32(s.opts.Local.MaxMemory >> 20)
	}
	l := limits{milliCPU: res.GetMilliCpuMax(), memoryMB: res.GetMemoryMbMax()}
	if l.milliCPU == 0 {
		l.milliCPU = max(res.GetMilliCpu(), defCPU)
	}
	if l.memoryMB == 0 {
		l.memoryMB = max(res.GetMemoryMb(), defMem)
	}
	if l == (limits{milliCPU: defCPU, memoryMB: defMem}) {
		return s.compute, nil
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	if s.limited == nil {
		s.limited = map[limits]*limitedProvider{}
	}
	if lp := s.limited[l]; lp != nil {
		return lp.c, nil
	}
	o := s.opts.Local
	o.MaxCPU = float64(l.milliCPU) / 1000
	o.MaxMemory = int64(l.memoryMB) << 20
	o.Prestart = -1
	p, err := local.New(o)
	if err != nil {
		return nil, err
	}
	lp := &limitedProvider{p: p, c: compute.New(compute.Config{Provider: p})}
	s.limited[l] = lp
	return lp.c, nil
}

// goBackground runs f on a goroutine that Close waits for.
func (s *Server) goBackground(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// SandboxRecord is what the server knows about a sandbox: what was asked
// for at create and what happened since.
type SandboxRecord struct {
	ID     string
	TaskID string
	AppID  string
	// V2 is true for sandboxes made by SandboxCreateV2.
	V2   bool
	Name string
	// ImageID and Image are the image's id and registry tag
	// ("python:3.13-slim"); an image made by a snapshot keeps the tag of
	// the image it came from.
	ImageID, Image string
	// DockerfileCommands are all the image's build commands, base first.
	DockerfileCommands []string
	// GPU is the request as "TYPE" or "TYPE:COUNT" ("A100:2"); empty for
	// none. GPUAttached says whether the sandbox got this machine's GPUs
	// (all of them, whatever the type): only where it has NVIDIA GPUs and
	// the provider can bind them.
	GPU         string
	GPUAttached bool
	// MilliCPU, MilliCPUMax, MemoryMiB and MemoryMiBMax are the resource
	// request and limits, recorded.
	MilliCPU, MilliCPUMax, MemoryMiB, MemoryMiBMax uint32
	Timeout, IdleTimeout                           time.Duration
	Workdir                                        string
	Command                                        []string
	// Env is the sandbox's environment from its secrets and env, in the
	// order Modal applies them.
	Env  map[string]string
	Tags map[string]string
	// EncryptedPorts, UnencryptedPorts and H2Ports are the open ports.
	EncryptedPorts, UnencryptedPorts, H2Ports []int
	BlockNetwork                              bool
	// Network is the outbound policy: "open", "blocked" or "allowlist"
	// (TaskSetNetworkAccess changes it), with the allowlist's entries.
	// Sandboxes reach out only with Options.HostNetwork: everything for an
	// open policy, an allowlist's plain domains on port 443 through the
	// provider's proxy (wildcards and CIDRs allow nothing).
	Network                        string
	OutboundCIDRs, OutboundDomains []string
	// Runtime is "gvisor", "vm" or "" as requested; recorded only.
	Runtime   string
	CreatedAt time.Time
	// FinishedAt is zero while the sandbox runs.
	FinishedAt time.Time
	// Status is "running", or how it ended: "completed" (its command
	// exited), "terminated", "timeout" or "idle-timeout".
	Status string
	// ExitCode is the code the SDK reports for the finished sandbox.
	ExitCode int
	// Execs counts the commands run in it, the filesystem tool included.
	Execs int
	// LocalID is the id of the provider's sandbox that ran it.
	LocalID string
}

// Sandboxes returns the records of every sandbox the server has created,
// oldest first, finished ones included.
func (s *Server) Sandboxes() []SandboxRecord {
	s.mu.Lock()
	list := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		list = append(list, sb)
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].createdAt < list[j].createdAt })
	out := make([]SandboxRecord, len(list))
	for i, sb := range list {
		out[i] = sb.record()
	}
	return out
}

// Sandbox returns the record of one sandbox.
func (s *Server) Sandbox(id string) (SandboxRecord, bool) {
	s.mu.Lock()
	sb := s.sandboxes[id]
	s.mu.Unlock()
	if sb == nil {
		return SandboxRecord{}, false
	}
	return sb.record(), true
}

// nextCreatedAt returns a creation time, in seconds, strictly after every
// earlier one: list pagination compares them.
func (s *Server) nextCreatedAtLocked(now time.Time) float64 {
	t := float64(now.UnixMicro()) / 1e6
	if t <= s.lastCreated {
		t = s.lastCreated + 1e-6
	}
	s.lastCreated = t
	return t
}
