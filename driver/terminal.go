package driver

import (
	"context"
	"io"
)

// Terminaler is implemented by a Sandbox that can run a command on a
// pseudo-terminal: what an interactive shell, a REPL or a full-screen
// program needs (line editing, job control, Ctrl-C reaching the
// foreground program, a window size).
type Terminaler interface {
	// Terminal starts req.Argv on a new pseudo-terminal in the sandbox and
	// returns at once. ctx bounds only the start. req is never nil and has
	// been validated by package compute: Argv is not empty, Rows and Cols
	// are positive, Env includes TERM.
	Terminal(ctx context.Context, req *TerminalRequest) (Terminal, error)
}

// TerminalRequest is what Terminaler.Terminal runs.
type TerminalRequest struct {
	// Argv is the program and its arguments, looked up in the sandbox's
	// PATH when Argv[0] has no slash.
	Argv []string
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string
	// Dir is the working directory; empty means the sandbox's default.
	Dir string
	// Rows and Cols are the terminal's initial size in characters.
	Rows, Cols int
}

// Terminal is a process running on a pseudo-terminal, as a Terminaler
// implements it. Its methods may be called from different goroutines:
// Read from one, Write and Resize from others, Close from any.
type Terminal interface {
	// Read reads what the program wrote to the terminal (stdout and
	// stderr are one stream on a terminal, with the terminal's own echo
	// and line discipline applied). After the program has exited and its
	// output is drained, Read returns io.EOF.
	//
	// Write sends keystrokes: bytes as a keyboard would (a Ctrl-C is the
	// byte 0x03, which the terminal turns into SIGINT for the foreground
	// process group).
	io.ReadWriter
	// Resize changes the terminal's size; the foreground program gets
	// SIGWINCH. A provider that cannot resize returns an error matching
	// ErrUnsupported.
	Resize(rows, cols int) error
	// Wait blocks until the program has exited and returns its exit code
	// (128+n for a program killed by signal n). The error is for failures
	// of the sandbox or transport.
	Wait() (exitCode int, err error)
	// Close hangs up: the program and everything it started on the
	// terminal are stopped, and Read and Wait return. Safe to call more
	// than once and after exit.
	Close() error
}
