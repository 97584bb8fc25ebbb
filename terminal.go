package compute

import (
	"context"
	"fmt"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// Default terminal size, used when TerminalOptions leaves it zero.
const (
	DefaultTerminalRows = 24
	DefaultTerminalCols = 80
)

// DefaultShell is what a Terminal runs when TerminalOptions.Argv is
// empty: a login shell, bash where the sandbox has it, else sh.
var DefaultShell = []string{"/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l"}

// TerminalOptions configures Sandbox.Terminal. A nil *TerminalOptions
// is a login shell on a 24×80 terminal.
type TerminalOptions struct {
	// Argv is the program and its arguments; empty means DefaultShell.
	Argv []string
	// Env is added to (and overrides) the sandbox's environment. TERM is
	// xterm-256color unless Env sets it.
	Env map[string]string
	// Dir is the working directory; empty means the sandbox's default.
	Dir string
	// Rows and Cols are the initial size in characters; zero means
	// DefaultTerminalRows and DefaultTerminalCols.
	Rows, Cols int
}

// A Terminal is a program running on a pseudo-terminal in a sandbox, as
// with `docker exec -it`: read its screen output, write keystrokes,
// resize it, wait for it. Read and Write may be used from different
// goroutines, as with a net.Conn.
type Terminal struct {
	t driver.Terminal
}

// Terminal starts a program on a new pseudo-terminal in the sandbox: by
// default a login shell. The program has the same confinement as any
// command of the sandbox. It runs until it exits, Close is called or the
// sandbox ends; ctx bounds only the start. Providers without terminals
// return an error matching ErrUnsupported.
func (s *Sandbox) Terminal(ctx context.Context, opts *TerminalOptions) (*Terminal, error) {
	o := TerminalOptions{}
	if opts != nil {
		o = *opts
	}
	req := &driver.TerminalRequest{Argv: o.Argv, Dir: o.Dir, Rows: o.Rows, Cols: o.Cols}
	if len(req.Argv) == 0 {
		req.Argv = DefaultShell
	}
	if req.Argv[0] == "" {
		return nil, fmt.Errorf("compute: empty program name: %w", ErrInvalid)
	}
	for _, a := range req.Argv {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("compute: argument %q contains a NUL byte: %w", a, ErrInvalid)
		}
	}
	if err := driver.ValidateEnv(o.Env); err != nil {
		return nil, err
	}
	if strings.ContainsRune(o.Dir, 0) {
		return nil, fmt.Errorf("compute: working directory contains a NUL byte: %w", ErrInvalid)
	}
	if err := checkTerminalSize(o.Rows, o.Cols); err != nil {
		return nil, err
	}
	if req.Rows == 0 {
		req.Rows = DefaultTerminalRows
	}
	if req.Cols == 0 {
		req.Cols = DefaultTerminalCols
	}
	req.Env = make(map[string]string, len(o.Env)+1)
	req.Env["TERM"] = "xterm-256color"
	for k, v := range o.Env {
		req.Env[k] = v
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tr, ok := s.ps.(driver.Terminaler)
	if !ok {
		return nil, fmt.Errorf("compute: %s sandboxes have no terminals: %w", s.Provider(), ErrUnsupported)
	}
	t, err := tr.Terminal(ctx, req)
	if err != nil {
		return nil, err
	}
	return &Terminal{t: t}, nil
}

// MaxTerminalSize bounds each of a terminal's rows and columns.
const MaxTerminalSize = 10000

func checkTerminalSize(rows, cols int) error {
	if rows < 0 || cols < 0 || rows > MaxTerminalSize || cols > MaxTerminalSize {
		return fmt.Errorf("compute: invalid terminal size %dx%d (rows and columns from 1 to %d): %w", rows, cols, MaxTerminalSize, ErrInvalid)
	}
	return nil
}

// Read reads the program's terminal output: what it printed and the
// terminal's echo of what was typed, as one stream. It returns io.EOF
// once the program has exited and everything it wrote has been read.
func (t *Terminal) Read(p []byte) (int, error) { return t.t.Read(p) }

// Write types p: bytes as a keyboard sends them ("\r" for Enter, 0x03
// for Ctrl-C, 0x04 for Ctrl-D at the start of a line).
func (t *Terminal) Write(p []byte) (int, error) { return t.t.Write(p) }

// Resize sets the terminal's size; the program gets SIGWINCH. On a
// provider that cannot resize a running terminal the error matches
// ErrUnsupported and the size stays as it was.
func (t *Terminal) Resize(rows, cols int) error {
	if rows == 0 || cols == 0 {
		return fmt.Errorf("compute: invalid terminal size %dx%d: %w", rows, cols, ErrInvalid)
	}
	if err := checkTerminalSize(rows, cols); err != nil {
		return err
	}
	return t.t.Resize(rows, cols)
}

// Wait waits for the program to exit and returns its exit code (128+n
// when killed by signal n). The error reports a failure of the sandbox
// or the connection, not a non-zero exit.
func (t *Terminal) Wait() (int, error) { return t.t.Wait() }

// Close hangs up the terminal: the program and everything it started on
// it are stopped. It is safe to call more than once and after exit.
func (t *Terminal) Close() error { return t.t.Close() }

// Driver returns the provider's terminal, for a provider's own features.
func (t *Terminal) Driver() driver.Terminal { return t.t }
