// Package driver defines the interfaces a sandbox provider implements for
// package compute, in the way database/sql/driver serves database/sql.
//
// A provider does the few things only it can do: create, find, list and
// destroy sandboxes, and start a process in one. Package compute adds
// everything generic on top (runtime detection, output capture, timeouts,
// the command-based filesystem, code contexts, routing between
// providers). Abilities only some providers have are separate interfaces
// that a Sandbox implements and package compute finds by type assertion:
// FileSystemer, URLer, Snapshotter.
//
// The values both sides share (CreateOptions, Info, FileInfo, Runtime,
// Network, Status and the sentinel errors) are defined here; package
// compute re-exports them under the same names, so users never need to
// import this package.
package driver

import (
	"context"
	"io"
)

// Provider is a sandbox backend. Implementations must be safe for
// concurrent use.
type Provider interface {
	// Name is the provider's short lowercase name ("local", "modal"),
	// reported in Info and used to pick a provider by name.
	Name() string
	// Create starts a new sandbox. opts is never nil and has been
	// validated by package compute.
	Create(ctx context.Context, opts *CreateOptions) (Sandbox, error)
	// Get returns a live sandbox by id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (Sandbox, error)
	// List returns the provider's live sandboxes.
	List(ctx context.Context) ([]Sandbox, error)
	// Destroy stops a sandbox and releases everything it holds. Destroying
	// an unknown or already destroyed sandbox returns nil.
	Destroy(ctx context.Context, id string) error
}

// Sandbox is one sandbox as its provider sees it.
type Sandbox interface {
	// ID is the sandbox's provider-assigned id.
	ID() string
	// Start runs a command inside the sandbox and returns at once. ctx
	// bounds only the start; the process lives until it exits or Kill is
	// called. Output must be written to req.Stdout and req.Stderr as it is
	// produced. A command that cannot be found must give an error that
	// matches ErrCommandNotFound.
	Start(ctx context.Context, req *ExecRequest) (Process, error)
	// Info describes the sandbox as it is now.
	Info(ctx context.Context) (*Info, error)
}

// ExecRequest is what Sandbox.Start runs.
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

// Process is a command started by Sandbox.Start.
type Process interface {
	// Wait blocks until the process has exited and its output has been
	// delivered, and returns its exit code (128+n for a process killed by
	// signal n). The error is for failures of the sandbox or transport,
	// not for a non-zero exit.
	Wait() (exitCode int, err error)
	// Kill stops the process and every process it started. It is safe to
	// call more than once and after exit.
	Kill() error
}

// FileSystemer is implemented by a Sandbox that can move files natively,
// faster and more exactly than through commands. Without it, package
// compute uses ExecFileSystem.
type FileSystemer interface {
	// FileSystem returns the sandbox's native file access.
	FileSystem() FileSystem
}

// URLer is implemented by a Sandbox that can expose a port of the sandbox
// to the outside (Modal's tunnels).
type URLer interface {
	// URL returns the address that reaches port inside the sandbox. A port
	// the sandbox was not created to expose is an error that lists the
	// exposed ones.
	URL(ctx context.Context, port int) (string, error)
}

// Snapshotter is implemented by a Sandbox that can save its filesystem as
// an image to create new sandboxes from.
type Snapshotter interface {
	// Snapshot saves the sandbox's filesystem and returns the snapshot's
	// id, which the provider accepts as the image of a new sandbox.
	Snapshot(ctx context.Context) (id string, err error)
}

// FileSystem is a sandbox's native file access. Relative paths are
// resolved against the sandbox's working directory. Errors are
// *fs.PathError values wrapping fs.ErrNotExist, fs.ErrExist and
// fs.ErrPermission where they apply.
type FileSystem interface {
	// Open opens a regular file for reading.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// WriteFile replaces name with everything read from r, creating parent
	// directories. A failed write leaves the old content in place.
	WriteFile(ctx context.Context, name string, r io.Reader) error
	// MkdirAll creates a directory and its parents; an existing directory
	// is not an error.
	MkdirAll(ctx context.Context, name string) error
	// ReadDir lists a directory, without "." and "..", sorted by name.
	ReadDir(ctx context.Context, name string) ([]FileInfo, error)
	// Stat describes a file, following symbolic links.
	Stat(ctx context.Context, name string) (*FileInfo, error)
	// RemoveAll removes a file or a directory tree; a missing path is not
	// an error.
	RemoveAll(ctx context.Context, name string) error
}

// SameWriter reports whether a and b are one writer, as os/exec decides
// when to give a command one pipe for both streams; writers of types that
// cannot be compared are different ones. Providers use it to honour
// ExecRequest's rule on Stdout == Stderr.
func SameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }()
	return a == b
}
