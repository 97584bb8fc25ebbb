package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/remote"
)

// provider is a driver.Provider the CLI owns: Close destroys whatever
// sandboxes it still has.
type provider interface {
	driver.Provider
	io.Closer
}

// providerOptions are the CLI flags that configure a provider itself
// rather than one sandbox.
type providerOptions struct {
	// isolation is the local provider's isolation ("namespaces" or "none").
	isolation string
	// server is a compute server's URL (--server): the remote provider
	// for it replaces the named one (see newRemote).
	server string
	// oneShot says the invocation uses a single sandbox (run, exec), so
	// starting spares ahead of demand would be wasted work.
	oneShot bool
	// stderr is where a provider shows its progress, when it is a
	// terminal (see newModal); set by newProvider.
	stderr io.Writer
	// keep leaves the sandboxes created through the provider running when
	// it is closed (the sandbox subcommands hand their ids on).
	keep bool
	// memory (bytes) and cpus size each sandbox; 0 means the provider's
	// default (--memory, --cpus).
	memory int64
	cpus   float64
	// noBuildNetwork runs local image build steps without network
	// (compute serve without --allow-network).
	noBuildNetwork bool
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
	if o.noBuildNetwork {
		opts.ImageBuildNetwork = driver.NetworkNone
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

// newModal starts the Modal provider, with the SDK's own configuration
// (MODAL_TOKEN_ID, MODAL_TOKEN_SECRET, ~/.modal.toml, MODAL_SERVER_URL).
// On a terminal it shows what a slow create is doing.
func newModal(o providerOptions) (provider, error) {
	stderr := o.stderr
	if stderr == nil {
		stderr = io.Discard
	}
	return modal.New(modal.Config{
		Progress: progressTo(stderr),
		Logger:   slog.New(&cliLogHandler{w: stderr}),
		Sandbox:  modal.SandboxOptions{MemoryMiB: int(o.memory >> 20), CPU: o.cpus},
	})
}

// cliLogHandler prints the SDK's warnings and errors as "compute: modal:
// message key=value" lines, without the one it logs for every connection
// to a local emulator's command router.
type cliLogHandler struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h *cliLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *cliLogHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "Using insecure TLS") {
		return nil
	}
	var b strings.Builder
	b.WriteString("compute: modal: ")
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteString("\n")
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *cliLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &cliLogHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *cliLogHandler) WithGroup(string) slog.Handler { return h }

// progressTo returns a progress reporter that writes "compute: msg" lines
// to w when w is a terminal, and nil (no progress) otherwise.
func progressTo(w io.Writer) func(string) {
	if !isTerminal(w) {
		return nil
	}
	start := time.Now()
	var mu sync.Mutex
	return func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "compute: %s (%.1fs)\n", msg, time.Since(start).Seconds())
	}
}

// isTerminal reports whether w is a character device (a terminal; also
// /dev/null, where progress costs nothing).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newRemote is the provider of run and exec --server: the remote provider
// for that server, with the token in $COMPUTE_TOKEN.
func newRemote(name string, o providerOptions) (provider, error) {
	if name != "local" {
		return nil, usagef("--provider names a provider of this machine; with --server, the server's provider runs the sandbox")
	}
	if o.isolation != string(local.IsolationNamespaces) {
		return nil, usagef("--isolation is a flag of the local provider; with --server, the server decides")
	}
	if o.memory != 0 || o.cpus != 0 {
		return nil, usagef("--memory and --cpus size the sandboxes of this machine's providers; with --server, the server's settings size them")
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q: want the server's URL, such as http://127.0.0.1:8080", o.server)
	}
	return remote.NewWithOptions(remote.Options{URL: o.server, Token: os.Getenv(tokenEnv), KeepSandboxes: o.keep}), nil
}
