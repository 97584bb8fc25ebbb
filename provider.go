package compute

import (
	"context"
	"io"
	"time"
)

// Provider is the driver interface a sandbox backend implements, in the
// spirit of database/sql/driver: it does the few things only the backend
// can do, and package compute adds everything generic on top (runtime
// detection, output capture, timeouts, the filesystem fallback, routing).
//
// Implementations must be safe for concurrent use.
type Provider interface {
	// Name is the provider's short lowercase name ("local", "modal"),
	// reported in Info and Result.
	Name() string
	// Create starts a new sandbox. opts is never nil.
	Create(ctx context.Context, opts *CreateOptions) (ProviderSandbox, error)
	// Get returns a live sandbox by id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (ProviderSandbox, error)
	// List returns the provider's live sandboxes.
	List(ctx context.Context) ([]ProviderSandbox, error)
	// Destroy stops a sandbox and releases everything it holds. Destroying
	// an unknown or already destroyed sandbox returns nil.
	Destroy(ctx context.Context, id string) error
}

// ProviderSandbox is one sandbox as its provider sees it.
//
// Optional abilities are separate interfaces found by type assertion:
// FileSystemProvider for a native filesystem. Without it, package compute
// moves files over Start with standard tools.
type ProviderSandbox interface {
	// ID is the sandbox's provider-assigned id.
	ID() string
	// Start runs a command inside the sandbox and returns at once. ctx
	// bounds only the start; the process lives until it exits or Kill is
	// called. Output must be written to req.Stdout and req.Stderr as it is
	// produced. A command that cannot be found must give an error that
	// matches ErrCommandNotFound.
	Start(ctx context.Context, req *ExecRequest) (ProviderProcess, error)
	// Info describes the sandbox as it is now.
	Info(ctx context.Context) (*Info, error)
}

// ExecRequest is what Start runs.
type ExecRequest struct {
	// Argv is the program and its arguments; Argv[0] is looked up in the
	// sandbox's PATH when it has no slash. Never run through a shell.
	Argv []string
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string
	// Dir is the working directory; empty means the sandbox's default.
	Dir string
	// Stdin is read until EOF and fed to the process; nil means empty input.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output as it is produced.
	// Package compute always sets both. When they are the same writer
	// (SameWriter), the process's stdout and stderr must share one pipe, so
	// that their order is kept (as os/exec does).
	Stdout, Stderr io.Writer
}

// ProviderProcess is a command started by ProviderSandbox.Start.
type ProviderProcess interface {
	// Wait blocks until the process has exited and its output has been
	// delivered, and returns its exit code (128+n for a process killed by
	// signal n). The error is for failures of the sandbox or transport,
	// not for a non-zero exit.
	Wait() (exitCode int, err error)
	// Kill stops the process and every process it started. It is safe to
	// call more than once and after exit.
	Kill() error
}

// FileSystemProvider is implemented by a ProviderSandbox that can move
// files natively (faster and more exact than going through commands).
type FileSystemProvider interface {
	FileSystem() ProviderFileSystem
}

// URLProvider is implemented by a ProviderSandbox that can expose a port
// of the sandbox to the outside (Modal's tunnels).
type URLProvider interface {
	// URL returns the address that reaches port inside the sandbox. A port
	// the sandbox was not created to expose is an error that lists the
	// exposed ones.
	URL(ctx context.Context, port int) (string, error)
}

// Snapshotter is implemented by a ProviderSandbox that can save its
// filesystem as an image to create new sandboxes from.
type Snapshotter interface {
	// Snapshot saves the sandbox's filesystem and returns the snapshot's
	// id, which the provider accepts as the image of a new sandbox.
	Snapshot(ctx context.Context) (id string, err error)
}

// ProviderFileSystem is a provider's native file access. Relative paths
// are resolved against the sandbox's working directory. Errors wrap
// fs.ErrNotExist, fs.ErrExist and fs.ErrPermission where they apply.
type ProviderFileSystem interface {
	// Open opens a regular file for reading.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// WriteFile replaces name with everything read from r, creating parent
	// directories. A failed write leaves the old content in place.
	WriteFile(ctx context.Context, name string, r io.Reader) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(ctx context.Context, name string) error
	// ReadDir lists a directory, without "." and "..", sorted by name.
	ReadDir(ctx context.Context, name string) ([]FileInfo, error)
	// Stat describes a file, following symbolic links.
	Stat(ctx context.Context, name string) (*FileInfo, error)
	// RemoveAll removes a file or a directory tree; a missing path is not
	// an error.
	RemoveAll(ctx context.Context, name string) error
}

// CreateOptions configures a new sandbox. The zero value is valid and
// means the provider's defaults.
type CreateOptions struct {
	// Provider picks a configured provider by name; empty means the router
	// chooses (see Config).
	Provider string
	// Timeout is the sandbox's whole lifetime; when it passes the sandbox
	// is destroyed. Zero means the provider's default (5 minutes for local).
	Timeout time.Duration
	// Env is the environment every command in the sandbox starts with, on
	// top of the provider's clean base (PATH, HOME, LANG).
	Env map[string]string
	// Dir is the default working directory inside the sandbox.
	Dir string
	// Runtime is the default runtime for RunCode when the call names none.
	Runtime Runtime
	// Metadata is kept with the sandbox and returned by Info.
	Metadata map[string]string
	// Name is a human-readable name, returned by Info.
	Name string
	// Network selects network access; the zero value is the provider's
	// default (no network for local, full access for cloud providers).
	Network Network
	// GPU asks for GPUs: a type and count in Modal's notation ("T4",
	// "A100:2", "any"). Empty means none. A provider that cannot give one
	// fails Create with an error matching ErrUnsupported.
	GPU string
	// NetworkAllow, when not empty, lets the sandbox reach these "host:port"
	// destinations and nothing else; it cannot be combined with
	// NetworkHost. How it is enforced is the provider's: the local provider
	// runs an HTTP/HTTPS proxy in the host process that the sandbox's
	// environment names (HTTP_PROXY, HTTPS_PROXY), so programs that ignore
	// proxy settings reach nothing.
	NetworkAllow []string
}

// Network is a sandbox's network policy.
type Network string

const (
	// NetworkDefault is the provider's default.
	NetworkDefault Network = ""
	// NetworkNone gives the sandbox only its own loopback interface.
	NetworkNone Network = "none"
	// NetworkHost gives the sandbox the host's network, explicitly.
	NetworkHost Network = "host"
)

// Status is a sandbox's state.
type Status string

// The states a sandbox can be in.
const (
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
	StatusError   Status = "error"
)

// Info describes a sandbox.
type Info struct {
	ID        string
	Provider  string
	Name      string
	Status    Status
	Runtime   Runtime
	CreatedAt time.Time
	// Timeout is the sandbox's lifetime from CreatedAt.
	Timeout  time.Duration
	Metadata map[string]string
	// Limits says, one entry each, which limits and confinement the
	// provider enforces on this sandbox and how ("memory 512 MiB (cgroup
	// v1)", "seccomp (...)"). Empty when the provider does not say.
	Limits []string
}

// FileInfo describes a file in a sandbox.
type FileInfo struct {
	// Name is the base name.
	Name string
	// Path is the full path inside the sandbox.
	Path    string
	IsDir   bool
	Size    int64
	Mode    uint32 // permission bits (fs.FileMode & fs.ModePerm)
	ModTime time.Time
}
