// Package compute runs untrusted code in sandboxes through one API,
// whatever runs the sandbox: the local provider (package local, isolated by
// the Linux kernel), Modal, or a remote compute server.
//
// Providers implement the small Provider interface; this package wraps
// them in *Sandbox, which adds runtime detection, output capture, timeouts,
// an os/exec-like Cmd and a filesystem with an io/fs view.
//
//	p, err := local.New(local.Options{})
//	if err != nil { ... }
//	c := compute.New(compute.Config{Provider: p})
//	sb, err := c.Create(ctx, nil)
//	defer sb.Destroy(context.Background())
//	res, err := sb.RunCode(ctx, `print("hello")`, nil)
package compute

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Strategy is how Create picks among several providers.
type Strategy string

const (
	// Priority tries providers in the order given.
	Priority Strategy = "priority"
	// RoundRobin starts each Create at the next provider in turn.
	RoundRobin Strategy = "round-robin"
)

// Config configures a Compute.
type Config struct {
	// Provider is the default provider.
	Provider Provider
	// Providers are more providers, tried after Provider.
	Providers []Provider
	// Strategy picks the provider for Create; the zero value is Priority.
	Strategy Strategy
	// NoFallback makes Create fail on the first provider's error instead of
	// trying the next one. Fallback happens only on Create, never on
	// commands (a command is never run twice).
	NoFallback bool
}

// Compute routes sandbox operations to providers. It is safe for
// concurrent use.
type Compute struct {
	providers  []Provider
	strategy   Strategy
	noFallback bool

	mu       sync.Mutex
	next     int
	affinity map[string]Provider // sandbox id -> provider that made it

	contexts *contextSet
}

// New returns a Compute for the configured providers (duplicates removed).
func New(cfg Config) *Compute {
	c := &Compute{strategy: cfg.Strategy, noFallback: cfg.NoFallback, affinity: map[string]Provider{}, contexts: newContextSet()}
	seen := map[string]bool{}
	for _, p := range append([]Provider{cfg.Provider}, cfg.Providers...) {
		if p == nil || seen[p.Name()] {
			continue
		}
		seen[p.Name()] = true
		c.providers = append(c.providers, p)
	}
	return c
}

// Providers returns the configured providers, default first.
func (c *Compute) Providers() []Provider {
	return append([]Provider(nil), c.providers...)
}

// order returns the providers to try for a create.
func (c *Compute) order(name string) ([]Provider, error) {
	if len(c.providers) == 0 {
		return nil, ErrNoProvider
	}
	if name != "" {
		for _, p := range c.providers {
			if p.Name() == name {
				return []Provider{p}, nil
			}
		}
		names := make([]string, len(c.providers))
		for i, p := range c.providers {
			names[i] = p.Name()
		}
		return nil, fmt.Errorf("compute: provider %q is not configured; configured providers: %s: %w", name, strings.Join(names, ", "), ErrInvalid)
	}
	start := 0
	if c.strategy == RoundRobin {
		c.mu.Lock()
		start = c.next % len(c.providers)
		c.next++
		c.mu.Unlock()
	}
	out := append(append([]Provider(nil), c.providers[start:]...), c.providers[:start]...)
	if c.noFallback {
		out = out[:1]
	}
	return out, nil
}

// Create starts a sandbox. opts may be nil.
func (c *Compute) Create(ctx context.Context, opts *CreateOptions) (*Sandbox, error) {
	if opts == nil {
		opts = &CreateOptions{}
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	order, err := c.order(opts.Provider)
	if err != nil {
		return nil, err
	}
	var errs []string
	var first error
	for _, p := range order {
		ps, err := p.Create(ctx, opts)
		if err == nil {
			c.mu.Lock()
			c.affinity[ps.ID()] = p
			c.mu.Unlock()
			return newSandbox(c.contexts, p, ps, opts), nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil || len(order) == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Sprintf("- %s: %v", p.Name(), err))
	}
	return nil, fmt.Errorf("compute: failed to create sandbox across %d providers:\n%s: %w", len(order), strings.Join(errs, "\n"), first)
}

// candidates returns the provider that created id first, then the others.
func (c *Compute) candidates(id string) []Provider {
	c.mu.Lock()
	p := c.affinity[id]
	c.mu.Unlock()
	if p == nil {
		return c.providers
	}
	out := []Provider{p}
	for _, q := range c.providers {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// Get returns a sandbox by id. An unknown or destroyed id gives an error
// matching ErrNotFound.
func (c *Compute) Get(ctx context.Context, id string) (*Sandbox, error) {
	if len(c.providers) == 0 {
		return nil, ErrNoProvider
	}
	if id == "" {
		return nil, fmt.Errorf("compute: sandbox id is empty: %w", ErrNotFound)
	}
	c.mu.Lock()
	maker := c.affinity[id]
	c.mu.Unlock()
	for _, p := range c.candidates(id) {
		ps, err := p.Get(ctx, id)
		if err == nil {
			return newSandbox(c.contexts, p, ps, nil), nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if p == maker {
			break // the provider that made it says it is gone
		}
	}
	return nil, fmt.Errorf("compute: sandbox %q: %w", id, ErrNotFound)
}

// List returns the sandboxes of every provider. A provider that fails to
// list makes List fail, naming it.
func (c *Compute) List(ctx context.Context) ([]*Sandbox, error) {
	if len(c.providers) == 0 {
		return nil, ErrNoProvider
	}
	var out []*Sandbox
	for _, p := range c.providers {
		list, err := p.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("compute: list %s: %w", p.Name(), err)
		}
		for _, ps := range list {
			out = append(out, newSandbox(c.contexts, p, ps, nil))
		}
	}
	return out, nil
}

// Destroy destroys a sandbox by id. Destroying an unknown or already
// destroyed sandbox is not an error.
func (c *Compute) Destroy(ctx context.Context, id string) error {
	if len(c.providers) == 0 {
		return ErrNoProvider
	}
	var errs []error
	for _, p := range c.candidates(id) {
		if err := p.Destroy(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
		}
		c.contexts.drop(p, id)
	}
	c.mu.Lock()
	delete(c.affinity, id)
	c.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("compute: destroy %q: %w", id, errors.Join(errs...))
	}
	return nil
}

// The package-level default, mirroring the seed's compute.setConfig and
// compute.sandbox.*.
var (
	defaultMu sync.RWMutex
	defaultC  *Compute
)

// SetConfig sets the configuration used by the package-level functions
// (Create, Get, List, Destroy).
func SetConfig(cfg Config) {
	c := New(cfg)
	defaultMu.Lock()
	defaultC = c
	defaultMu.Unlock()
}

// Default returns the package-level Compute, or nil before SetConfig.
func Default() *Compute {
	defaultMu.RLock()
	defer defaultMu.RUnlock()
	return defaultC
}

func def() (*Compute, error) {
	if c := Default(); c != nil {
		return c, nil
	}
	return nil, ErrNoProvider
}

// Create starts a sandbox with the package-level configuration.
func Create(ctx context.Context, opts *CreateOptions) (*Sandbox, error) {
	c, err := def()
	if err != nil {
		return nil, err
	}
	return c.Create(ctx, opts)
}

// Get returns a sandbox by id with the package-level configuration.
func Get(ctx context.Context, id string) (*Sandbox, error) {
	c, err := def()
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, id)
}

// List lists sandboxes with the package-level configuration.
func List(ctx context.Context) ([]*Sandbox, error) {
	c, err := def()
	if err != nil {
		return nil, err
	}
	return c.List(ctx)
}

// Destroy destroys a sandbox with the package-level configuration.
func Destroy(ctx context.Context, id string) error {
	c, err := def()
	if err != nil {
		return err
	}
	return c.Destroy(ctx, id)
}
