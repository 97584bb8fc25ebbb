// Command compute runs code and commands in fresh sandboxes.
//
//	compute run examples/hello.py
//	compute run -c 'console.log(1 + 1)'
//	compute exec --env NAME=world -- sh -c 'echo hello $NAME'
//
// Each invocation creates one sandbox, runs one program in it with its
// output streamed to this terminal, destroys the sandbox and exits with the
// program's exit code. See "compute --help".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute"
)

func main() {
	// Nothing runs before this point but package init functions: package
	// local's init turns this binary into a sandbox agent when it is
	// re-executed as one.
	tuneGC(os.Args[1:])
	ctx, stop := notifySignals()
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, providers: defaultProviders, exit: os.Exit}
	code := a.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// oneShotGCPercent is the garbage collector's target (GOGC) for run and
// exec, unless GOGC is set. They live for one program, and at the default
// of 100 a collection tends to start while the sandbox starts (the package
// initialisers leave about 3 MiB of heap against a first goal of 4 MiB),
// competing with the sandbox for the CPUs. At 400 the first goal is
// 16 MiB, which these commands do not reach when they stream a program's
// output, while memory still stays proportional to what is live.
const oneShotGCPercent = 400

// tuneGC sets the collector for the command that args (the CLI's
// arguments) name; see oneShotGCPercent.
func tuneGC(args []string) {
	if len(args) == 0 || os.Getenv("GOGC") != "" {
		return
	}
	switch args[0] {
	case "run", "exec":
		debug.SetGCPercent(oneShotGCPercent)
	}
}

// interrupted is the cause (context.Cause) of the CLI's context when a
// signal ended it.
type interrupted struct{ sig os.Signal }

func (e interrupted) Error() string { return e.sig.String() + " signal received" }

// notifySignals returns a context that SIGINT or SIGTERM cancels, with
// the signal as its cause (interrupted). After the first signal the
// default behaviour is restored, so that a second one ends the CLI at
// once, cleanup or not.
func notifySignals() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			cancel(interrupted{sig})
		case <-ctx.Done():
		}
		signal.Stop(sigs)
	}()
	return ctx, func() { cancel(nil) }
}

// Exit codes of the CLI itself; a program's own exit code is passed
// through unchanged.
const (
	exitFailure     = 1   // the CLI failed (sandbox could not start, ...)
	exitUsage       = 2   // bad flags or arguments
	exitTimeout     = 124 // --timeout or the sandbox's lifetime killed the program (as timeout(1))
	exitNotFound    = 127 // the command does not exist in the sandbox
	exitOutOfMemory = 137 // killed for going over the memory limit (128 + SIGKILL)
	exitInterrupted = 130 // interrupted: Ctrl-C (128 + SIGINT); 143 for SIGTERM (see interruptCode)
)

// interruptCode is the exit code of a run that ctx's end interrupted: 128
// plus the number of the signal that ended it (130 for SIGINT, 143 for
// SIGTERM), as shells report a program a signal ended; exitInterrupted
// when no signal did (a caller cancelled the context).
func interruptCode(ctx context.Context) int {
	var in interrupted
	if errors.As(context.Cause(ctx), &in) {
		if sig, ok := in.sig.(syscall.Signal); ok {
			return 128 + int(sig)
		}
	}
	return exitInterrupted
}

// run is the whole CLI: it parses args (without the program name), runs
// the command and returns the exit code. Everything it prints goes to
// stdout and stderr; it reads stdin only when asked to (run -, --stdin).
// Unlike main, it never exits the process (see app.exit).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, providers: defaultProviders}
	return a.main(ctx, args)
}

// app holds the CLI's streams and the providers it can use.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	providers      map[string]providerFactory
	// exit ends the process when cleanup after a signal overruns its
	// grace (see exitIfStuck); nil (in tests that run the CLI in-process)
	// means never.
	exit func(code int)
}

// exitStatus is returned by a command that has already reported what
// happened and only needs the CLI to exit with this code.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a bad flag or argument: reported with a pointer to --help
// and exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// failure is an error from a command's own work (not from parsing): exit
// code 1.
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// runE adapts a command's function so that its plain errors are failures
// (exit 1), which tells them from cobra's own parse errors (exit 2).
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var es exitStatus
		var ue *usageError
		if err == nil || errors.As(err, &es) || errors.As(err, &ue) {
			return err
		}
		if errors.Is(err, compute.ErrMissingCredentials) {
			// The library's advice names modal.Config's fields; a CLI
			// user sets the environment.
			err = errors.New("the modal provider needs Modal credentials: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET " +
				"(create a token with `modal token new` or at https://modal.com/settings/tokens), or put them in ~/.modal.toml")
		}
		return &failure{err}
	}
}

func (a *app) main(ctx context.Context, args []string) int {
	root := a.rootCommand(args)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var es exitStatus
	var f *failure
	switch {
	case errors.As(err, &es):
		if es == exitInterrupted {
			// A command that reports an interruption exits as the signal
			// that caused it says (143 for SIGTERM).
			return interruptCode(ctx)
		}
		return int(es)
	case errors.As(err, &f):
		a.errorf("%v", f.err)
		return exitFailure
	default:
		// Flag and argument errors from cobra, unknown commands, and our
		// own usageErrors.
		a.errorf("%v", err)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
}

// errorf prints "compute: message" to stderr, without doubling the prefix
// that errors from package compute already carry.
func (a *app) errorf(format string, args ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "compute: ")
	fmt.Fprintf(a.stderr, "compute: %s\n", msg)
}

// rootCommand builds the command tree for args. For run and exec, whose
// start every invocation waits for, it holds only that command: building
// the dozens of others (their flags, help texts) would be work thrown
// away. Their own help and errors are the same either way.
func (a *app) rootCommand(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "compute",
		Short: "Run untrusted code in sandboxes",
		Long: `compute runs code and commands in fresh sandboxes.

Each invocation creates one sandbox, runs one program in it with its output
streamed here as it comes, destroys the sandbox, and exits with the
program's exit code. The sandbox has no network unless --network is given,
and none of this machine's environment variables.

Exit codes: the program's own; 1 for a syntax error (as python3 and node
do) or when the sandbox itself failed; 2 for usage errors; 124 when
--timeout killed the program; 127 when the command was not found; 130 when
interrupted by Ctrl-C, 143 by SIGTERM. After a signal, run and exec clean
up (kill the program, destroy the sandbox) for at most 5 seconds, then
exit anyway; a second signal exits at once.`,
		Example: `  compute run examples/hello.py
  compute run -c 'print(2 ** 100)'
  compute exec -- ls -la /
  compute shell
  compute version`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// No shell-completion command: it is not needed yet.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	if len(args) > 0 {
		switch args[0] {
		case "run":
			root.AddCommand(a.runCommand())
			return root
		case "exec":
			root.AddCommand(a.execCommand())
			return root
		}
	}
	root.AddCommand(a.runCommand(), a.execCommand(), a.versionCommand())
	root.AddCommand(a.shellCommand())
	root.AddCommand(a.serveCommand(), a.benchCommand())
	root.AddCommand(a.modalCommand())
	root.AddCommand(a.sandboxCommand())
	root.AddCommand(a.mcpCommand())
	root.AddCommand(a.imageCommand())
	return root
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of compute",
		Long: `Print the version of compute: the module version it was built from
("(devel)" for a build from a checkout), the VCS revision when known, the
Go version and the platform.`,
		Example: `  compute version`,
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, versionString())
			return nil
		}),
	}
}

// versionString is "compute VERSION [REVISION] GOVERSION OS/ARCH".
func versionString() string {
	version, rev := "(unknown)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			}
		}
	}
	parts := []string{"compute", version}
	if rev != "" {
		parts = append(parts, rev)
	}
	parts = append(parts, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return strings.Join(parts, " ")
}

// noArgs refuses positional arguments, in a sentence of its own (cobra's
// says "unknown command").
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, but got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}

// wantArgs checks the number of positional arguments (max < 0: no upper
// bound) and says what the command wants, instead of cobra's "accepts 1
// arg(s), received 0".
func wantArgs(what string, min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef("%s wants %s, but got %d argument(s): %s", cmd.CommandPath(), what, len(args), cmd.UseLine())
		}
		return nil
	}
}
