//go:build !linux

package local

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/computesdk-go/compute/driver"
)

func checkSupport(Options) error {
	return errors.New("local: sandboxes need Linux (user namespaces); on " + runtime.GOOS + " use the modal provider or a compute server (remote provider)")
}

// sandbox is never created off Linux; it exists so the package builds.
type sandbox struct {
	id      string
	created time.Time
}

func startAgent(*Provider, bool, []string, *sandboxImage) (*sandbox, error) {
	return nil, checkSupport(Options{})
}

func startAgentFor(*Provider, bool, []string, *sandboxImage, *binding) (*sandbox, error) {
	return nil, checkSupport(Options{})
}

func launchAgent(*Provider, bool, []string, bool) (*sandbox, error) {
	return nil, checkSupport(Options{})
}

func (s *sandbox) buildRoot(*sandboxImage) error { return checkSupport(Options{}) }

func gpuDevices(string) ([]string, error) { return nil, nil }

func (s *sandbox) activate(context.Context, string, *driver.CreateOptions) error {
	return checkSupport(Options{})
}

func (s *sandbox) destroy() error { return nil }
func (s *sandbox) ID() string     { return s.id }
func (s *sandbox) Info(context.Context) (*driver.Info, error) {
	return nil, driver.ErrUnsupported
}
func (s *sandbox) Start(context.Context, *driver.ExecRequest) (driver.Process, error) {
	return nil, driver.ErrUnsupported
}

func sweepCgroups() {}

func sweepStaging() {}

type sandboxImage struct{ release func() }

func (p *Provider) openImage(context.Context, string) (*sandboxImage, error) {
	return nil, checkSupport(Options{})
}

func (p *Provider) takeImageSpare(bool, *sandboxImage) *sandbox { return nil }

func (p *Provider) takeBareFor(network bool, _ *sandboxImage) *sandbox { return p.takeBare(network) }

func (p *Provider) holdImage(context.Context, *driver.CreateOptions) (*sandboxImage, error) {
	return nil, checkSupport(Options{})
}

// agentPath does nothing: there is no agent off Linux.
func agentPath() string { return "" }

// prepareAgent does nothing: there is no agent off Linux.
func prepareAgent() {}

// holdLauncher does nothing: there is no launcher off Linux.
func holdLauncher() {}

// releaseLauncher does nothing: there is no launcher off Linux.
func releaseLauncher() {}
