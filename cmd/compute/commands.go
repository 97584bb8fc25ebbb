package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// commonFlags are the flags of every command that runs something.
type commonFlags struct {
	provider  string
	timeout   time.Duration
	network   bool
	isolation string
	server    string
}

func (c *commonFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&c.provider, "provider", "local", "provider that runs the sandbox (available: "+strings.Join(providerNames(defaultProviders), ", ")+")")
	fs.DurationVar(&c.timeout, "timeout", 0, "kill the program after this long (30s, 500ms, 10m) and exit 124; 0: no limit but the sandbox's lifetime (5m on local)")
	fs.BoolVar(&c.network, "network", false, "give the sandbox the host's network (default: no network)")
	fs.StringVar(&c.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" runs the program as a plain host process, NOT isolated: trusted code only`)
	fs.StringVar(&c.server, "server", "", "run the sandbox on the compute server at this URL (see compute serve), with the token in $COMPUTE_TOKEN")
}

func (c *commonFlags) validate() error {
	if c.timeout < 0 {
		return usagef("--timeout must not be negative, got %v", c.timeout)
	}
	switch local.Isolation(c.isolation) {
	case local.IsolationNamespaces, local.IsolationNone:
	default:
		return usagef("unknown --isolation %q (want %q or %q)", c.isolation, local.IsolationNamespaces, local.IsolationNone)
	}
	return nil
}

// sandboxLifetimeMargin is how much longer than --timeout the sandbox
// itself may live, so that the command's own timeout fires first.
const sandboxLifetimeMargin = 30 * time.Second

// destroyTimeout bounds the destruction of the sandbox at exit, which runs
// on a fresh context so that it happens after Ctrl-C too.
const destroyTimeout = 30 * time.Second

// interruptGrace is how long run and exec may clean up after Ctrl-C or
// SIGTERM (the program's kill, the sandbox's destruction, the provider's
// close) before the CLI exits anyway: a provider that stops answering
// cannot keep it alive. The sandbox is then left to its own timeout.
const interruptGrace = 5 * time.Second

// exitIfStuck makes the CLI exit (a.exit) if it is still cleaning up
// interruptGrace after ctx ends, printing one line that says so (and
// which sandbox may be left, from left). The returned stop disarms it.
func (a *app) exitIfStuck(ctx context.Context, left func() string) (stop func()) {
	if a.exit == nil {
		return func() {}
	}
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			a.errorf("interrupted, and cleanup did not finish within %v: exiting without it%s", interruptGrace, left())
			a.exit(interruptCode(ctx))
		}
	})
	return func() {
		stopAfter()
		close(done)
	}
}

// inSandbox creates a sandbox, calls fn with it, destroys the sandbox
// (also when ctx is cancelled) and turns fn's outcome into the CLI's exit
// status.
func (a *app) inSandbox(ctx context.Context, cf *commonFlags, fn func(context.Context, *compute.Sandbox) (*compute.Result, error)) error {
	if err := cf.validate(); err != nil {
		return err
	}
	var created atomic.Pointer[compute.Sandbox]
	defer a.exitIfStuck(ctx, func() string {
		if sb := created.Load(); sb != nil {
			return fmt.Sprintf(" (sandbox %s may run until its timeout)", sb.ID())
		}
		return ""
	})()
	if cf.isolation == string(local.IsolationNone) {
		a.errorf("WARNING: --isolation none: the program runs as a plain process on this machine, " +
			"with this user's access to its files, processes and network; use it only for code you trust")
	}
	p, err := a.newProvider(cf.provider, providerOptions{isolation: cf.isolation, server: cf.server, oneShot: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); err != nil {
			a.errorf("closing the %s provider: %v", cf.provider, err)
		}
	}()

	opts := &compute.CreateOptions{Network: compute.NetworkNone}
	if cf.network {
		opts.Network = compute.NetworkHost
	} else if cf.isolation == string(local.IsolationNone) {
		opts.Network = compute.NetworkDefault // unisolated: there is no restriction to ask for
	}
	if cf.timeout > 0 {
		opts.Timeout = cf.timeout + sandboxLifetimeMargin
	}
	c := compute.New(compute.Config{Provider: p, NoFallback: true})
	sb, err := c.Create(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			a.errorf("interrupted")
			return exitStatus(interruptCode(ctx))
		}
		return fmt.Errorf("creating a sandbox: %w", err)
	}
	created.Store(sb)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), destroyTimeout)
		defer cancel()
		if err := sb.Destroy(dctx); err != nil {
			a.errorf("destroying sandbox %s: %v", sb.ID(), err)
		}
	}()

	res, err := fn(ctx, sb)
	var se *compute.SyntaxError
	switch {
	case errors.As(err, &se):
		// The interpreter's own message has already been streamed to
		// stderr; exit 1, as python3 and node do for a syntax error.
		return exitStatus(1)
	case errors.Is(err, compute.ErrTimeout):
		if cf.timeout > 0 {
			a.errorf("timed out after %v", cf.timeout)
		} else {
			a.errorf("%v", err)
		}
		return exitStatus(exitTimeout)
	case err != nil && ctx.Err() != nil:
		a.errorf("interrupted")
		return exitStatus(interruptCode(ctx))
	case err != nil && res != nil && res.ExitCode == exitNotFound:
		// RunCode: the interpreter is not installed in the sandbox.
		a.errorf("%v", err)
		return exitStatus(exitNotFound)
	case err != nil:
		return err
	case res.ExitCode != 0:
		return exitStatus(res.ExitCode)
	}
	return nil
}

// codeOutputCap is how much output RunCode keeps in its Result: enough for
// the interpreter's syntax-error report, which is all the CLI reads back
// (the output itself is streamed).
const codeOutputCap = 64 << 10

type runFlags struct {
	common  commonFlags
	code    string
	runtime string
	stdin   bool
}

func (a *app) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] FILE | -c CODE",
		Short: "Run a Python or Node.js program in a fresh sandbox",
		Long: `Run a Python or Node.js program in a fresh sandbox, streaming its output,
and exit with its exit code.

The program is FILE, the code given with -c, or standard input when FILE is
"-". Its runtime comes from FILE's extension (.py: python; .js, .mjs, .cjs:
node), else from --runtime, else it is detected from the code: Node.js
only when the code has strictly more Node.js markers (console., require(,
const, let, =>, ===, ...) than Python ones (print(, import, def, None, ...);
anything ambiguous is Python.

A syntax error exits 1 with the interpreter's message, as python3 and node
do. Code passed with -c or on standard input runs with node -e, so it is
CommonJS: ES module import statements fail there.`,
		Example: `  # A file; the runtime comes from the extension
  compute run examples/hello.py
  compute run examples/hello.js

  # Inline code; the runtime is detected, or named
  compute run -c 'print(sum(range(10)))'
  compute run --runtime node -c 'console.log(process.version)'

  # Code from standard input
  echo 'import sys; print(sys.version)' | compute run -

  # Kill it after 2 seconds (exit code 124)
  compute run --timeout 2s -c 'while True: pass'

  # Feed the program this terminal's standard input
  printf '3\n4\n' | compute run --stdin -c 'import sys; print(sum(int(l) for l in sys.stdin))'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("run takes one FILE, got %d arguments (to pass arguments to a program, use compute exec)", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.runCode(cmd.Context(), &f, cmd.Flags().Changed("code"), args)
		}),
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.code, "code", "c", "", "program to run, instead of FILE")
	fs.StringVar(&f.runtime, "runtime", "", `runtime, "python" or "node" (default: from FILE's extension, else detected)`)
	fs.BoolVar(&f.stdin, "stdin", false, "forward standard input to the program")
	f.common.add(fs)
	return cmd
}

// runtimeFromExt is the runtime a file name implies, or "" if none.
func runtimeFromExt(name string) compute.Runtime {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".py":
		return compute.Python
	case ".js", ".mjs", ".cjs":
		return compute.Node
	}
	return ""
}

func (a *app) runCode(ctx context.Context, f *runFlags, haveCode bool, args []string) error {
	rt := compute.Runtime(f.runtime)
	switch rt {
	case "", compute.Python, compute.Node:
	default:
		return usagef("unknown --runtime %q (want %q or %q)", f.runtime, compute.Python, compute.Node)
	}
	var code string
	switch {
	case haveCode && len(args) > 0:
		return usagef("give either FILE or -c CODE, not both")
	case haveCode:
		code = f.code
	case len(args) == 0:
		return usagef("missing program: give FILE, - (standard input) or -c CODE")
	case args[0] == "-":
		if f.stdin {
			return usagef("--stdin cannot be used when the program itself comes from standard input (-)")
		}
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return fmt.Errorf("reading the program from standard input: %w", err)
		}
		code = string(b)
	default:
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		code = string(b)
		if ext := runtimeFromExt(args[0]); ext != "" {
			if rt != "" && rt != ext {
				return usagef("--runtime %s contradicts the extension of %s (%s)", rt, args[0], ext)
			}
			rt = ext
		}
	}
	opts := &compute.CodeOptions{
		Runtime: rt,
		RunOptions: compute.RunOptions{
			Timeout:   f.common.timeout,
			Stdout:    a.stdout,
			Stderr:    a.stderr,
			MaxOutput: codeOutputCap,
		},
	}
	if f.stdin {
		opts.Stdin = a.stdin
	}
	return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
		return sb.RunCode(ctx, code, opts)
	})
}

type execFlags struct {
	common commonFlags
	env    []string
	dir    string
	stdin  bool
}

func (a *app) execCommand() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] [--] COMMAND [ARGS...]",
		Short: "Run a command in a fresh sandbox",
		Long: `Run a command in a fresh sandbox, streaming its output, and exit with its
exit code.

COMMAND is looked up in the sandbox's PATH and run with ARGS directly, not
through a shell: for pipes and variables, run sh -c 'SCRIPT'. Flags after
COMMAND belong to COMMAND. A command that does not exist exits 127.

The command starts with the sandbox's clean environment (PATH, HOME, LANG)
plus --env; nothing of this machine's environment is passed in. Its
standard input is empty unless --stdin is given.`,
		Example: `  compute exec -- uname -a
  compute exec ls -la /

  # Environment, working directory, a shell for the $ expansion
  compute exec --env NAME=world --dir /tmp -- sh -c 'echo "hello $NAME from $(pwd)"'

  # Feed the command this terminal's standard input
  echo hello | compute exec --stdin -- tr a-z A-Z

  # Give up after 500 milliseconds (exit code 124)
  compute exec --timeout 500ms -- sleep 10

  # Reach the network (there is none by default)
  compute exec --network -- python3 -c 'import socket; print(socket.gethostbyname("example.com"))'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("missing command: compute exec [flags] -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.execArgv(cmd.Context(), &f, args)
		}),
	}
	fs := cmd.Flags()
	// Everything after COMMAND is COMMAND's, flags included.
	fs.SetInterspersed(false)
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, KEY=VALUE (repeatable)")
	fs.StringVarP(&f.dir, "dir", "w", "", "working directory inside the sandbox (default: the sandbox's own)")
	fs.BoolVarP(&f.stdin, "stdin", "i", false, "forward standard input to the command")
	f.common.add(fs)
	return cmd
}

func (a *app) execArgv(ctx context.Context, f *execFlags, argv []string) error {
	if argv[0] == "" {
		return usagef("empty command name")
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	opts := &compute.RunOptions{
		Env:       env,
		Dir:       f.dir,
		Timeout:   f.common.timeout,
		Stdout:    a.stdout,
		Stderr:    a.stderr,
		MaxOutput: -1, // the output is streamed; keep no copy
	}
	if f.stdin {
		opts.Stdin = a.stdin
	}
	return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
		return sb.Run(ctx, argv, opts)
	})
}

// parseEnv turns --env KEY=VALUE entries into a map; a later entry wins.
func parseEnv(entries []string) (map[string]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(entries))
	for _, kv := range entries {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--env %q: want KEY=VALUE", kv)
		}
		env[k] = v
	}
	return env, nil
}
