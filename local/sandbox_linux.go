//go:build linux

package local

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agent"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// sandbox is the host's handle on one agent.
type sandbox struct {
	p       *Provider
	id      string
	name    string
	meta    map[string]string
	runtime driver.Runtime
	created time.Time
	timeout time.Duration
	workDir string // inside the sandbox
	dir     string // default working directory inside

	network bool // shares the host's network

	agent  agentProcess
	ctl    *net.UnixConn
	exited chan struct{} // closed when the agent process has exited
	// watching: watch runs (it closes exited); set before it starts, by
	// the goroutine that starts the agent.
	watching bool
	timer    *time.Timer
	// hostDir is a host directory to remove at the end (IsolationNone).
	hostDir string

	limits []string      // what the sandbox enforces, for Info
	cg     *cgroupLimits // nil where cgroups are unavailable
	quota  *reservation  // its share of the provider-wide caps
	proxy  *proxy        // the network allowlist's proxy, if any
	image  *sandboxImage // the image the root is made of, held in use; nil for the host's system
	upper  *os.File      // an image build step's writable layer (agentproto.ImageRoot.Capture), for the build to take
	// layerIDs identify the layer directories an image root mounted, top
	// first (takeImageSpare checks them).
	layerIDs []fileID

	// Until the root is built (launchAgent, buildRoot): the agent's
	// configuration, the agent's end of the control socket, and the
	// empty host directory the root is built on.
	cfg      agentproto.Config
	agentEnd *os.File
	staging  string
	// bindAtStart is the Create a sandbox is started for, not ahead of
	// demand: its settings go with the configuration (agentproto.Config's
	// Init), saving the init round trip. initDone says they went, and
	// initErr is what the agent answered to them.
	bindAtStart *binding
	initDone    bool
	initErr     string

	releaseOnce sync.Once
	releaseErr  error

	mu          sync.Mutex
	destroyed   bool
	expired     bool
	terms       map[*terminal]struct{} // open terminals, closed at the end
	termsClosed bool                   // the end has come: no new ones
	// imageReleased: release has run, so an image set later is released
	// at once.
	imageReleased bool
}

var _ driver.FileSystemer = (*sandbox)(nil)

// activate makes a started sandbox the one a Create asked for: its id,
// environment, working directory, metadata and lifetime. A sandbox
// started for this very Create (startAgentFor) took them with its
// configuration already; any other gets them in an init operation.
func (s *sandbox) activate(ctx context.Context, id string, opts *driver.CreateOptions) error {
	var err error
	if s.initDone && s.id == id {
		if s.initErr != "" {
			err = fmt.Errorf("local: working directory %s: %s", s.dir, s.initErr)
		}
	} else {
		var rep *agentproto.Reply
		rep, err = s.call(ctx, s.bind(id, opts, s.image))
		if err == nil && rep.Err != "" {
			err = fmt.Errorf("local: working directory %s: %s", s.dir, rep.Err)
		}
	}
	if err != nil {
		return err
	}
	if s.proxy != nil {
		s.proxy.wg.Add(1)
		go s.proxy.serve(s.ctl)
		s.limits = append(s.limits, fmt.Sprintf("network: only %s (HTTP/HTTPS proxy enforced in the host, at %s inside)", strings.Join(opts.NetworkAllow, ", "), agentproto.ProxyAddr))
	}
	if !s.network && s.proxy == nil && s.p.opts.Isolation == IsolationNamespaces {
		s.limits = append(s.limits, "network: none (own loopback only)")
	}
	s.limits = append(s.limits, fmt.Sprintf("lifetime %v", s.timeout))
	s.created = time.Now()
	s.timer = time.AfterFunc(s.timeout, func() {
		s.mu.Lock()
		s.expired = true
		s.mu.Unlock()
		s.p.Destroy(context.Background(), s.id)
	})
	return nil
}

// bind takes a Create's settings (img is the sandbox's image root, if
// any) and returns the init request that gives the agent its part of
// them. The allowlist proxy, if asked for, is made here and served once
// the agent has taken the request (activate).
func (s *sandbox) bind(id string, opts *driver.CreateOptions, img *sandboxImage) *agentproto.Request {
	p := s.p
	s.id, s.name, s.meta, s.runtime = id, opts.Name, maps.Clone(opts.Metadata), opts.Runtime
	s.timeout = opts.Timeout
	if s.timeout == 0 {
		s.timeout = p.opts.Timeout
	}
	s.dir = s.workDir
	if img != nil {
		if wd := img.workingDir(); wd != "" {
			s.dir = wd
		}
	}
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
	}
	return &agentproto.Request{Op: agentproto.OpInit, Env: env, Dir: s.dir, Proxy: s.proxy != nil}
}

func (s *sandbox) ID() string { return s.id }

// setImage makes img the image the sandbox holds in use and releases at
// its end (which may come from watch at any time).
func (s *sandbox) setImage(img *sandboxImage) {
	s.mu.Lock()
	s.image = img
	gone := s.imageReleased
	s.mu.Unlock()
	if gone {
		img.release() // the sandbox ended already
	}
}

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
		agent.KillTree(s.agent.Pid())
	}
	s.agent.Kill()
	<-s.exited
	return s.release()
}

// release frees what a dead sandbox still holds in the host: its control
// socket, proxy, cgroup and (IsolationNone) directory. It runs once, from
// destroy or when the agent died on its own.
func (s *sandbox) release() error {
	s.releaseOnce.Do(func() {
		s.closeTerminals()
		s.quota.release()
		s.ctl.Close()
		if s.proxy != nil {
			s.proxy.stop()
		}
		if s.agentEnd != nil {
			s.agentEnd.Close() // a spare destroyed before its root was built
		}
		if s.staging != "" {
			os.Remove(s.staging) // empty, and already gone once the root is built
		}
		s.mu.Lock()
		img := s.image
		s.imageReleased = true
		s.mu.Unlock()
		if img != nil {
			// The agent is gone, and with its mount namespace the
			// overlay: the layers may be removed now.
			img.release()
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

func (s *sandbox) status() driver.Status {
	select {
	case <-s.exited:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.destroyed || s.expired {
			return driver.StatusStopped
		}
		return driver.StatusError
	default:
		return driver.StatusRunning
	}
}

// Info describes the sandbox. A running sandbox's agent is asked whether
// it answers: one that does not (wedged, or out of descriptors) makes the
// status StatusError, since nothing can be done in the sandbox.
func (s *sandbox) Info(ctx context.Context) (*driver.Info, error) {
	status := s.status()
	if status == driver.StatusRunning && !s.answers(ctx) && ctx.Err() == nil {
		status = driver.StatusError
	}
	return &driver.Info{
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
	rep, err := s.call(ctx, &agentproto.Request{Op: agentproto.OpPing})
	return err == nil && rep.Done
}
