package compute

import (
	"errors"
	"fmt"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// ErrNoProvider is returned by the package-level functions before
// SetConfig, and by a Compute configured with no provider.
var ErrNoProvider = errors.New("compute: no provider configured: call compute.SetConfig(compute.Config{Provider: p}) or use compute.New")

// The sentinel errors for the categories callers branch on, shared with
// providers (package driver defines them); test with errors.Is.
var (
	// ErrInvalid is returned when an argument is not valid (an unknown
	// runtime or network policy, a bad environment variable name, a NUL
	// byte in a path or argument, a negative timeout), wrapped with the
	// reason. Nothing was changed.
	ErrInvalid = driver.ErrInvalid
	// ErrNotFound is returned when a sandbox does not exist (or was
	// destroyed and is gone). A missing file is an *fs.PathError matching
	// fs.ErrNotExist instead, as in package os.
	ErrNotFound = driver.ErrNotFound
	// ErrTimeout is returned when a command or sandbox ran past its
	// timeout and was killed.
	ErrTimeout = driver.ErrTimeout
	// ErrUnsupported is returned when the provider cannot do what was
	// asked.
	ErrUnsupported = driver.ErrUnsupported
	// ErrMissingCredentials is returned when the provider needs
	// credentials that were not given.
	ErrMissingCredentials = driver.ErrMissingCredentials
	// ErrAuthentication is returned when the provider rejected the
	// credentials.
	ErrAuthentication = driver.ErrAuthentication
	// ErrQuotaExceeded is returned when the provider refused for lack of
	// quota.
	ErrQuotaExceeded = driver.ErrQuotaExceeded
	// ErrCommandNotFound is returned by Start when the program to run does
	// not exist in the sandbox; Run and RunCommand report it as exit code
	// 127 instead.
	ErrCommandNotFound = driver.ErrCommandNotFound
	// ErrStopped is returned when the sandbox is no longer running.
	ErrStopped = driver.ErrStopped
	// ErrOutOfMemory is returned when a command was killed for going over
	// the sandbox's memory limit; the Result is returned too, with exit
	// code 137.
	ErrOutOfMemory = driver.ErrOutOfMemory
	// ErrContextDied is returned by a CodeContext whose interpreter is
	// gone: it exited (os._exit, process.exit), was killed (out of
	// memory), or stopped answering after an interrupt. Restart gives the
	// context a fresh interpreter; its variables are lost.
	ErrContextDied = driver.ErrContextDied
)

// ExitCodeNotFound and ExitCodeTimeout are the exit codes reported for a
// command that could not be found and one killed by its timeout, as shells
// and timeout(1) do.
const (
	ExitCodeNotFound = driver.ExitCodeNotFound
	ExitCodeTimeout  = driver.ExitCodeTimeout
)

// SyntaxError is returned by RunCode when the interpreter rejected the
// code before running any of it.
type SyntaxError struct {
	Runtime Runtime
	// Message is the interpreter's own report, as it printed it (already
	// written to RunOptions.Stderr too, when that was set).
	Message string
	// Result is the run that produced the error.
	Result *Result
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("syntax error (%s): %s", e.Runtime, strings.TrimSpace(e.Message))
}

// ExitError is returned by Cmd.Run, Cmd.Wait and Cmd.Output when the
// command exits with a non-zero code, like *exec.ExitError.
type ExitError struct {
	ExitCode int
	// Stderr holds the captured standard error when Cmd.Output collected it.
	Stderr []byte
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit status %d", e.ExitCode)
}
