package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/computesdk-go/compute"
)

type shellFlags struct {
	common commonFlags
	env    []string
	dir    string
}

func (a *app) shellCommand() *cobra.Command {
	var f shellFlags
	cmd := &cobra.Command{
		Use:   "shell [flags] [-- COMMAND [ARGS...]]",
		Short: "Open an interactive shell in a fresh sandbox",
		Long: `Open an interactive shell in a fresh sandbox, as "docker run -it" does: a
login shell (bash where the sandbox has it, else sh) on a terminal of its
own, or COMMAND with ARGS (python3, top, vim, ...). This terminal is put in
raw mode, so every key (Ctrl-C, Ctrl-D, Ctrl-Z, arrows, tab) goes to the
program in the sandbox, and the sandbox's terminal follows this window's
size. When the program exits, this terminal is restored, the sandbox is
destroyed, and compute exits with the program's exit code.

When standard input is not a terminal (a pipe, a file), there is no
terminal and no raw mode: compute shell behaves like "compute exec --stdin".
COMMAND reads standard input; without COMMAND the shell runs the script
that standard input holds.

On a terminal, the sandbox lives for an hour unless --lifetime (or
--timeout) says otherwise. To end a session from outside, send compute
SIGTERM or SIGINT (kill PID): the program is hung up, the terminal
restored and the sandbox destroyed (exit 143 or 130). Closing the window
does the same (exit 129).

Exit codes: the program's own; 124 when --timeout or the sandbox's
--lifetime ran out; 137 when it went over --memory; 127 when COMMAND does
not exist.`,
		Example: `  # A shell in a fresh sandbox; "exit" ends it and destroys the sandbox
  compute shell

  # A Python REPL, with the network and 2 GiB of memory
  compute shell --network --memory 2g -- python3

  # Without a terminal: the shell runs the script on standard input
  echo 'uname -a; ls /' | compute shell

  # In an OCI image (pulled into this machine's store on first use)
  compute shell --image python:3.12-slim -- python3

  # On Modal, in an image of your own
  compute shell --provider modal --image python:3.13-slim`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.shell(cmd.Context(), &f, args)
		}),
	}
	fs := cmd.Flags()
	// Everything after COMMAND is COMMAND's, flags included.
	fs.SetInterspersed(false)
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, KEY=VALUE (repeatable)")
	fs.StringVarP(&f.dir, "dir", "w", "", "working directory inside the sandbox (default: the sandbox's own)")
	f.common.add(fs)
	fs.Lookup("lifetime").Usage = "the sandbox's lifetime, after which it is destroyed with the program (exit 124); 0: on a terminal an hour, else as for exec"
	fs.Lookup("timeout").Usage = "hang up (or kill the command) after this long and exit 124; 0: no limit but the sandbox's lifetime"
	return cmd
}

// shell is compute shell: a terminal in a fresh sandbox when standard
// input is a terminal, else an exec with standard input.
func (a *app) shell(ctx context.Context, f *shellFlags, argv []string) error {
	if len(argv) > 0 && argv[0] == "" {
		return usagef("empty command name")
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	in, ok := a.terminalIn()
	if !ok {
		if len(argv) == 0 {
			argv = compute.DefaultShell
		}
		opts := &compute.RunOptions{Env: env, Dir: f.dir, Timeout: f.common.timeout, Stdin: a.stdin,
			Stdout: a.stdout, Stderr: a.stderr, MaxOutput: -1}
		return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
			return sb.Run(ctx, argv, opts)
		})
	}
	ctx, stop := onHangup(ctx)
	defer stop()
	if f.common.lifetime == 0 && f.common.timeout == 0 {
		// A person at a shell needs longer than a program's default.
		f.common.lifetime = shellLifetime
	}
	opts := &compute.TerminalOptions{Argv: argv, Env: env, Dir: f.dir}
	return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
		code, err := a.attach(ctx, sb, in, opts, f.common.timeout,
			`without a terminal, run commands with "compute exec -- COMMAND", or pipe a script into "compute shell"`)
		switch {
		case (err != nil || code != 0) && ctx.Err() == nil && lifetimeOver(ctx, sb):
			// The sandbox ended under the program; inSandbox says so.
			return nil, fmt.Errorf("the terminal ended with the sandbox: %w", compute.ErrStopped)
		case errors.Is(err, compute.ErrCommandNotFound):
			return &compute.Result{ExitCode: exitNotFound}, err
		case err != nil:
			return nil, err
		}
		return &compute.Result{ExitCode: code}, nil
	})
}

// shellLifetime is the lifetime of compute shell's sandbox when neither
// --lifetime nor --timeout sets one.
const shellLifetime = time.Hour

// lifetimeOver reports whether sb has reached the end of its lifetime.
func lifetimeOver(ctx context.Context, sb *compute.Sandbox) bool {
	info, err := sb.Info(context.WithoutCancel(ctx))
	return err == nil && info.Timeout > 0 && !info.CreatedAt.IsZero() && time.Since(info.CreatedAt) >= info.Timeout
}

// sandboxShell is compute sandbox shell: a terminal in an existing
// sandbox, which keeps running afterwards.
func (a *app) sandboxShell(ctx context.Context, f *sandboxShellFlags, id string, argv []string) error {
	if len(argv) > 0 && argv[0] == "" {
		return usagef("empty command name")
	}
	in, ok := a.terminalIn()
	if !ok {
		if len(argv) == 0 {
			argv = compute.DefaultShell
		}
		return a.sandboxExec(ctx, &sandboxExecFlags{sf: f.sf, env: f.env, dir: f.dir, stdin: true, timeout: f.timeout}, id, argv)
	}
	if f.timeout < 0 {
		return usagef("--timeout must not be negative, got %v", f.timeout)
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	ctx, stop := onHangup(ctx)
	defer stop()
	defer a.exitIfStuck(ctx, func() string { return "" })()
	return a.withProvider(&f.sf, func(_ provider, c *compute.Compute) error {
		sb, err := c.Get(ctx, id)
		if err != nil {
			return err
		}
		code, err := a.attach(ctx, sb, in, &compute.TerminalOptions{Argv: argv, Env: env, Dir: f.dir}, f.timeout,
			`run commands in it with "compute sandbox exec `+id+` -- COMMAND" instead`)
		switch {
		case errors.Is(err, compute.ErrTimeout):
			a.errorf("timed out after %v", f.timeout)
			return exitStatus(exitTimeout)
		case err != nil && ctx.Err() != nil:
			a.errorf("interrupted")
			return exitStatus(interruptCode(ctx))
		case errors.Is(err, compute.ErrCommandNotFound):
			a.errorf("%v", err)
			return exitStatus(exitNotFound)
		case err != nil:
			return err
		case code != 0:
			return exitStatus(code)
		}
		return nil
	})
}

// onHangup returns a context that SIGHUP cancels, as notifySignals's
// context is cancelled by SIGINT and SIGTERM: a closed window ends a
// terminal session, and the sandbox is cleaned up, instead of the signal
// killing the CLI. stop ignores SIGHUP from then on: the terminal is gone
// or restored, and a hangup during the last of the cleanup must not cut it
// short.
func onHangup(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case sig := <-hup:
			cancel(interrupted{sig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(nil)
		<-done
		signal.Ignore(syscall.SIGHUP)
	}
}

// terminalIn returns standard input when it is a terminal.
func (a *app) terminalIn() (*os.File, bool) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// terminalSize is the size of this process's terminal (standard input,
// else standard output), or 0, 0 (the sandbox's default) when unknown.
func (a *app) terminalSize(in *os.File) (rows, cols int) {
	for _, f := range []any{in, a.stdout} {
		if f, ok := f.(*os.File); ok {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
				return min(h, compute.MaxTerminalSize), min(w, compute.MaxTerminalSize)
			}
		}
	}
	return 0, 0
}

// drainGrace bounds how long attach waits, once the program has exited,
// for the rest of its output: a provider that never ends its output stream
// cannot keep the CLI alive.
const drainGrace = 5 * time.Second

// attach starts a terminal in sb with opts and connects it to this
// process's terminal until the program exits: in, standard input, is put
// in raw mode (restored on every way out), its keys are typed into the
// sandbox's terminal, whose output goes to standard output, and window
// size changes become resizes. It returns the program's exit code.
//
// The end of ctx (SIGINT, SIGTERM or SIGHUP to compute itself: see
// onHangup) or of timeout (when positive) hangs the terminal up and
// returns ctx's error or one matching compute.ErrTimeout; the end of
// standard input (in raw mode, a terminal that went away) hangs it up and
// returns 129 (128 + SIGHUP). noTerminals is the advice added to the error
// of a provider without terminals.
func (a *app) attach(ctx context.Context, sb *compute.Sandbox, in *os.File, opts *compute.TerminalOptions, timeout time.Duration, noTerminals string) (code int, err error) {
	fd := int(in.Fd())
	o := *opts
	o.Rows, o.Cols = a.terminalSize(in)
	t, err := sb.Terminal(ctx, &o)
	if errors.Is(err, compute.ErrUnsupported) {
		return 0, fmt.Errorf("%w; %s", err, noTerminals)
	}
	if err != nil {
		return 0, err
	}
	defer t.Close()

	// Before raw mode, so that no size change is missed.
	resized := make(chan os.Signal, 1)
	notifyResize(resized)
	defer signal.Stop(resized)

	state, err := term.MakeRaw(fd)
	if err != nil {
		return 0, fmt.Errorf("putting the terminal in raw mode: %w", err)
	}
	var once sync.Once
	restore := func() { once.Do(func() { term.Restore(fd, state) }) }
	defer restore()
	// The size may have changed since it was read.
	rows, cols := o.Rows, o.Cols
	resize := func() {
		if r, c := a.terminalSize(in); r > 0 && (r != rows || c != cols) {
			rows, cols = r, c
			// A provider that cannot resize (Modal) keeps the first size;
			// nothing useful can be printed over a raw terminal.
			_ = t.Resize(r, c)
		}
	}
	resize()

	keys, err := newTerminalInput(in)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	outputDone := make(chan struct{})
	inputEnded := make(chan struct{}) // closed when standard input ends
	type exit struct {
		code int
		err  error
	}
	exited := make(chan exit, 1)
	out := &lineTracker{w: a.stdout, atStart: true}
	wg.Go(func() {
		defer close(outputDone)
		io.Copy(out, t)
	})
	input := func() {
		b := make([]byte, 32<<10)
		for {
			n, err := keys.Read(b)
			if n > 0 {
				if _, werr := t.Write(b[:n]); werr != nil {
					return // the terminal is closed: Wait says why
				}
			}
			if err != nil {
				if !errors.Is(err, errInputStopped) {
					close(inputEnded)
				}
				return
			}
		}
	}
	if inputStops {
		wg.Go(input)
	} else {
		go input() // see terminalInput: it ends at the next key, or with the process
	}
	wg.Go(func() {
		code, err := t.Wait()
		exited <- exit{code, err}
	})
	// Every way out: restore the terminal first (nothing the provider does
	// can delay it), hang up, and wait for the goroutines, which all end
	// once the terminal is closed and the input stopped.
	defer func() {
		restore()
		keys.Stop()
		t.Close()
		wg.Wait()
		keys.Close()
		if (err != nil || code != 0) && !out.atStart {
			// What compute prints next (why it ended) starts a line.
			io.WriteString(a.stdout, "\n")
		}
	}()

	var expired <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		expired = tm.C
	}
	hungUp := false
	for {
		select {
		case <-resized:
			resize()
		case e := <-exited:
			// The program has exited: show the rest of its output.
			select {
			case <-outputDone:
			case <-ctx.Done():
			case <-time.After(drainGrace):
			}
			if hungUp {
				// However the provider ended the program, this is how
				// it went: the terminal hung up.
				return 128 + int(syscall.SIGHUP), nil
			}
			return e.code, e.err
		case <-inputEnded:
			// Standard input ended: in raw mode, only when the terminal
			// is gone. Hang up, as a closed window does.
			inputEnded = nil
			hungUp = true
			t.Close()
		case <-ctx.Done():
			restore()
			t.Close()
			return 0, ctx.Err()
		case <-expired:
			restore()
			t.Close()
			return 0, fmt.Errorf("the terminal's --timeout %v ran out: %w", timeout, compute.ErrTimeout)
		}
	}
}

// lineTracker is an io.Writer that remembers whether what it wrote last
// ended a line.
type lineTracker struct {
	w       io.Writer
	atStart bool
}

func (l *lineTracker) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.atStart = p[n-1] == '\n'
	}
	return n, err
}
