package driver

import "errors"

// The sentinel errors for the categories callers branch on. Providers wrap
// them with %w; callers test with errors.Is. Package compute re-exports
// each under the same name.
var (
	// ErrInvalid is returned when an argument from the caller is not
	// valid: an unknown runtime or network policy, an environment variable
	// name with "=", a NUL byte in a path or argument, a negative timeout.
	// It is wrapped with the reason; nothing was changed.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound is returned when a sandbox does not exist (or was
	// destroyed and is gone). A missing file is an *fs.PathError matching
	// fs.ErrNotExist instead, as in package os.
	ErrNotFound = errors.New("not found")
	// ErrTimeout is returned when a command or sandbox ran past its
	// timeout and was killed.
	ErrTimeout = errors.New("timed out")
	// ErrUnsupported is returned when the provider cannot do what was
	// asked.
	ErrUnsupported = errors.New("not supported by this provider")
	// ErrMissingCredentials is returned when the provider needs
	// credentials that were not given.
	ErrMissingCredentials = errors.New("missing credentials")
	// ErrAuthentication is returned when the provider rejected the
	// credentials.
	ErrAuthentication = errors.New("authentication failed")
	// ErrQuotaExceeded is returned when the provider refused for lack of
	// quota.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrCommandNotFound is returned by Sandbox.Start when the program to
	// run does not exist in the sandbox. Package compute's Run and
	// RunCommand report it as exit code 127, not as an error.
	ErrCommandNotFound = errors.New("command not found")
	// ErrStopped is returned when the sandbox is no longer running.
	ErrStopped = errors.New("sandbox is not running")
	// ErrOutOfMemory is returned when a command was killed for going over
	// the sandbox's memory limit; the result comes with it, exit code 137.
	ErrOutOfMemory = errors.New("out of memory")
	// ErrContextDied is returned by a code context whose interpreter is
	// gone: it exited (os._exit, process.exit), was killed (out of
	// memory), or stopped answering after an interrupt. Restart gives the
	// context a fresh interpreter.
	ErrContextDied = errors.New("the code context's interpreter died")
)

// ExitCodeNotFound and ExitCodeTimeout are the exit codes reported for a
// command that could not be found and one killed by its timeout, as shells
// and timeout(1) do.
const (
	ExitCodeNotFound = 127
	ExitCodeTimeout  = 124
)
