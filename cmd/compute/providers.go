package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// provider is a compute.Provider the CLI owns: Close destroys whatever
// sandboxes it still has.
type provider interface {
	compute.Provider
	io.Closer
}

// providerOptions are the CLI flags that configure a provider itself
// rather than one sandbox.
type providerOptions struct {
	// isolation is the local provider's isolation ("namespaces" or "none").
	isolation string
	// server is a compute server's URL (--server): the remote provider
	// for it replaces the named one (see newRemote in serve.go).
	server string
	// oneShot says the invocation uses a single sandbox (run, exec), so
	// starting spares ahead of demand would be wasted work.
	oneShot bool
	// stderr is where a provider shows its progress, when it is a
	// terminal (see newModal in sandbox.go); set by newProvider.
	stderr io.Writer
	// keep leaves the sandboxes created through the provider running when
	// it is closed (the sandbox subcommands hand their ids on).
	keep bool
	// memory (bytes) and cpus size each sandbox; 0 means the provider's
	// default (--memory, --cpus).
	memory int64
	cpus   float64
}

// providerFactory starts a provider for one CLI invocation.
type providerFactory func(providerOptions) (provider, error)

// defaultProviders are the providers --provider can name.
var defaultProviders = map[string]providerFactory{
	"local": newLocal,
	"modal": newModal,
}

func newLocal(o providerOptions) (provider, error) {
	opts := local.Options{Isolation: local.Isolation(o.isolation), MaxMemory: o.memory, MaxCPU: o.cpus}
	if o.oneShot {
		opts.Prestart = -1
	}
	p, err := local.New(opts)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newProvider starts the named provider, or explains which ones exist.
func (a *app) newProvider(name string, o providerOptions) (provider, error) {
	if o.server != "" {
		return newRemote(name, o)
	}
	f, ok := a.providers[name]
	if !ok {
		return nil, usagef("unknown provider %q (available: %s)", name, strings.Join(providerNames(a.providers), ", "))
	}
	if name != "local" && o.isolation != string(local.IsolationNamespaces) {
		return nil, usagef("--isolation is a flag of the local provider, not of %q", name)
	}
	o.stderr = a.stderr
	p, err := f(o)
	if err != nil {
		return nil, fmt.Errorf("starting the %s provider: %w", name, err)
	}
	return p, nil
}

// providerNames lists the providers' names, sorted.
func providerNames(m map[string]providerFactory) []string {
	return slices.Sorted(maps.Keys(m))
}
