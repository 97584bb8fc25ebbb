package compute

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors for the categories callers branch on. Providers wrap
// them with %w; test with errors.Is.
var (
	// ErrNoProvider: no provider was configured.
	ErrNoProvider = errors.New("compute: no provider configured: call compute.SetConfig(compute.Config{Provider: p}) or use compute.New")
	// ErrNotFound: the sandbox does not exist (or was destroyed and is
	// gone). A missing file is an *fs.PathError matching fs.ErrNotExist,
	// as in package os.
	ErrNotFound = errors.New("not found")
	// ErrTimeout: a command or sandbox ran past its timeout and was killed.
	ErrTimeout = errors.New("timed out")
	// ErrUnsupported: the provider cannot do this.
	ErrUnsupported = errors.New("not supported by this provider")
	// ErrMissingCredentials: the provider needs credentials that were not given.
	ErrMissingCredentials = errors.New("missing credentials")
	// ErrAuthentication: the provider rejected the credentials.
	ErrAuthentication = errors.New("authentication failed")
	// ErrQuotaExceeded: the provider refused for lack of quota.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrCommandNotFound: the program to run does not exist in the sandbox.
	// Run and RunCommand report it as exit code 127, not as an error.
	ErrCommandNotFound = errors.New("command not found")
	// ErrStopped: the sandbox is no longer running.
	ErrStopped = errors.New("sandbox is not running")
	// ErrOutOfMemory: the command was killed for going over the sandbox's
	// memory limit. The Result is returned too, with exit code 137.
	ErrOutOfMemory = errors.New("out of memory")
)

// ExitCodeNotFound and ExitCodeTimeout are the exit codes reported for a
// command that could not be found and one killed by its timeout, as shells
// and timeout(1) do.
const (
	ExitCodeNotFound = 127
	ExitCodeTimeout  = 124
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
