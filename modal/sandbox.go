package modal

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

// Sandbox is one Modal sandbox: the driver.Sandbox of this
// provider, with Modal's extras (URL, Tunnels, Snapshot, the SDK's own
// handle). Reach it from a *compute.Sandbox with
//
//	msb := sb.Driver().(*modal.Sandbox)
//
// It is safe for concurrent use.
type Sandbox struct {
	s  *state
	sb *modalsdk.Sandbox
	id string

	mu sync.Mutex
	// meta is what Info reports, nil until known (set at create, or read
	// from the sandbox's tags on first use).
	meta *meta
	// workdir is the default working directory, "" until known.
	workdir string
	// gone says why the sandbox no longer runs, once this provider knows
	// (it destroyed it, or found it finished); "" while it runs.
	gone string
	// procs are the commands started through this handle and not yet
	// finished, ended by Destroy.
	procs map[*process]struct{}
}

var (
	_ driver.Sandbox      = (*Sandbox)(nil)
	_ driver.FileSystemer = (*Sandbox)(nil)
)

// ID returns the sandbox's Modal id ("sb-...").
func (s *Sandbox) ID() string { return s.id }

// Modal returns the SDK's handle of the sandbox, for what this package
// does not wrap (readiness probes, tags, volumes reloads, ...). Detaching
// it makes the sandbox unusable through this package too.
func (s *Sandbox) Modal() *modalsdk.Sandbox { return s.sb }

// poll returns the sandbox's exit code, nil while it runs.
func (s *Sandbox) poll(ctx context.Context) (*int, error) {
	return s.sb.Poll(ctx, nil)
}

// terminate ends the sandbox and the commands started through this
// handle.
func (s *Sandbox) terminate(ctx context.Context) error {
	_, err := s.sb.Terminate(ctx, nil)
	if err != nil && !isGone(err) {
		return err
	}
	s.mu.Lock()
	s.gone = "it was destroyed"
	procs := make([]*process, 0, len(s.procs))
	for p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.abandon(stoppedError("exec", s.id, "it was destroyed", nil))
	}
	return err
}

// detach releases the handle's connection to the sandbox once the calls
// in flight are over.
func (s *Sandbox) detach() { s.sb.Detach() }

func (s *Sandbox) goneReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

func (s *Sandbox) setGone(why string) {
	s.mu.Lock()
	if s.gone == "" {
		s.gone = why
	}
	s.mu.Unlock()
}

// metadata returns what the sandbox's tags say, reading them once.
func (s *Sandbox) metadata(ctx context.Context) (*meta, error) {
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	tags, err := s.sb.GetTags(ctx, nil)
	if err != nil {
		return nil, err
	}
	m = decodeMeta(tags)
	s.mu.Lock()
	if s.meta == nil {
		s.meta = m
		if s.workdir == "" {
			s.workdir = m.Workdir
		}
	}
	m = s.meta
	s.mu.Unlock()
	return m, nil
}

// Info describes the sandbox: its state from a poll (one call to Modal;
// two, run at once, the first time for a sandbox found by id).
func (s *Sandbox) Info(ctx context.Context) (*driver.Info, error) {
	if why := s.goneReason(); why != "" {
		s.mu.Lock()
		m := s.meta
		s.mu.Unlock()
		if m == nil {
			return nil, stoppedError("info", s.id, why, nil)
		}
		info := m.info(s.id)
		info.Status = driver.StatusStopped
		return info, nil
	}
	var (
		wg      sync.WaitGroup
		m       *meta
		metaErr error
	)
	wg.Go(func() { m, metaErr = s.metadata(ctx) })
	code, err := s.poll(ctx)
	wg.Wait()
	if err == nil {
		err = metaErr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx, err)
		}
		if isGone(err) {
			return nil, stoppedError("info", s.id, "", err)
		}
		return nil, wrapErr("info", s.id, err)
	}
	info := m.info(s.id)
	switch {
	case code == nil:
		info.Status = driver.StatusRunning
	case *code == 0 || *code == 124 || *code == 137:
		info.Status = driver.StatusStopped
	default:
		info.Status = driver.StatusError
	}
	return info, nil
}

// Tunnels returns the sandbox's tunnels by container port, for the ports
// exposed with SandboxOptions (EncryptedPorts, H2Ports, UnencryptedPorts).
// Modal's create answer carries the encrypted ones, so for a sandbox made
// by this handle with only those, this makes no call.
func (s *Sandbox) Tunnels(ctx context.Context) (map[int]*modalsdk.Tunnel, error) {
	t, err := s.sb.Tunnels(ctx, 50*time.Second, nil)
	if err != nil {
		return nil, ctxErr(ctx, s.opErr(ctx, "tunnels", err))
	}
	return t, nil
}

// URL returns the public address of an exposed port: an https:// URL
// ending at Modal's TLS tunnel to the port (for an unencrypted port too;
// Tunnels gives its plain TCP address). A port that was not exposed gives
// an error listing the exposed ones.
func (s *Sandbox) URL(ctx context.Context, port int) (string, error) {
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	if m != nil && m.Ports != nil && !slices.Contains(m.Ports, port) {
		return "", noPortError(s.id, port, m.Ports)
	}
	tunnels, err := s.Tunnels(ctx)
	if err != nil {
		return "", err
	}
	t := tunnels[port]
	if t == nil {
		ports := make([]int, 0, len(tunnels))
		for p := range tunnels {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		return "", noPortError(s.id, port, ports)
	}
	return t.URL(), nil
}

func noPortError(id string, port int, exposed []int) error {
	msg := fmt.Sprintf("port %d is not exposed", port)
	if len(exposed) == 0 {
		msg += "; the sandbox exposes no ports"
	} else {
		s := make([]string, len(exposed))
		for i, p := range exposed {
			s[i] = fmt.Sprint(p)
		}
		msg += "; exposed ports: " + strings.Join(s, ", ")
	}
	msg += " (expose ports at create with SandboxOptions.EncryptedPorts, H2Ports or UnencryptedPorts)"
	return &Error{Op: "url", Sandbox: id, Kind: driver.ErrNotFound, Msg: msg}
}

// Snapshot saves the sandbox's filesystem as a Modal image and returns
// its id ("im-..."). A sandbox created with that id as
// SandboxOptions.Image starts with those files. The image lives 30 days.
func (s *Sandbox) Snapshot(ctx context.Context) (string, error) {
	img, err := s.sb.SnapshotFilesystem(ctx, nil)
	if err != nil {
		return "", ctxErr(ctx, s.opErr(ctx, "snapshot", err))
	}
	s.s.images.set(img.ImageID, img)
	return img.ImageID, nil
}

// opErr turns an SDK error of an operation on the sandbox into the right
// error: a sandbox that is gone says so, and why when Modal knows.
func (s *Sandbox) opErr(ctx context.Context, op string, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if isGone(err) {
		return stoppedError(op, s.id, s.whyGone(ctx), err)
	}
	return wrapErr(op, s.id, err)
}

// whyGone asks Modal how the sandbox ended (on error paths only), within
// ctx and probeTimeout; "" when it does not say.
func (s *Sandbox) whyGone(ctx context.Context) string {
	if why := s.goneReason(); why != "" {
		return why
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	code, err := s.poll(ctx)
	if err != nil || code == nil {
		return ""
	}
	return exitReason(*code)
}

// workDir returns the sandbox's default working directory: known from
// create, from the first command (which reports it), or asked once.
func (s *Sandbox) workDir(ctx context.Context) (string, error) {
	s.mu.Lock()
	wd := s.workdir
	s.mu.Unlock()
	if wd != "" {
		return wd, nil
	}
	// The answer is the whole output; its exit status adds nothing.
	wd, err := s.runScript(ctx, `printf '%s' "$PWD"`)
	if err != nil {
		return "", ctxErr(ctx, s.opErr(ctx, "exec", err))
	}
	if !strings.HasPrefix(wd, "/") {
		return "", &Error{Op: "exec", Sandbox: s.id, Msg: fmt.Sprintf("the sandbox reported the working directory %q", wd)}
	}
	s.setWorkdir(wd)
	return wd, nil
}

// ping checks that Modal runs a command in the sandbox and reports its
// exit status, within probeTimeout.
func (s *Sandbox) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cp, err := s.sb.Exec(ctx, []string{"true"}, &modalsdk.SandboxExecParams{Stdout: modalsdk.Ignore, Stderr: modalsdk.Ignore})
	if err == nil {
		_, err = cp.Wait(ctx, nil)
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("no answer from Modal within %v (%w)", probeTimeout, err)
	}
	return err
}

func (s *Sandbox) setWorkdir(wd string) {
	s.mu.Lock()
	if s.workdir == "" {
		s.workdir = wd
	}
	s.mu.Unlock()
}

var (
	_ driver.URLer       = (*Sandbox)(nil)
	_ driver.Snapshotter = (*Sandbox)(nil)
)
