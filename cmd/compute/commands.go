package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	lifetime  time.Duration
	memory    string
	cpus      float64
	network   bool
	isolation string
	server    string
	image     string
	steps     imageStepFlags

	memoryBytes int64    // memory, parsed by validate
	imageSteps  []string // --dockerfile and --image-step, resolved by validate
}

func (c *commonFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&c.provider, "provider", "local", "provider that runs the sandbox (available: "+strings.Join(providerNames(defaultProviders), ", ")+")")
	fs.DurationVar(&c.timeout, "timeout", 0, "kill the program after this long (30s, 500ms, 10m) and exit 124; 0: no limit but the sandbox's lifetime")
	fs.DurationVar(&c.lifetime, "lifetime", 0, "the sandbox's lifetime, after which it is destroyed with the program (exit 124); 0: --timeout plus 30s, else the provider's default (5m on local)")
	fs.StringVarP(&c.memory, "memory", "m", "", `memory limit of the sandbox, as 512m or 2g (a bare number is MiB); past it the program is killed (exit 137). Default: 1g on local`)
	fs.Float64Var(&c.cpus, "cpus", 0, "CPUs the sandbox may use, as 0.5 or 2; default: 1 on local")
	fs.BoolVar(&c.network, "network", false, "give the sandbox the host's network (default: no network)")
	fs.StringVar(&c.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" runs the program as a plain host process, NOT isolated: trusted code only`)
	fs.StringVar(&c.server, "server", "", "run the sandbox on the compute server at this URL (see compute serve), with the token in $COMPUTE_TOKEN")
	fs.StringVar(&c.image, "image", "", imageFlagUsage)
	c.steps.add(fs)
}

// imageFlagUsage is the help of --image, the same for every command.
const imageFlagUsage = `the sandbox's root filesystem, an OCI image: python:3.12-slim, ghcr.io/org/img:tag, name@sha256:..., oci:DIR[:TAG] or docker-archive:FILE (Modal takes registry references and its im- ids only). Default: the host's /usr on local, python:3.13-slim (node:22-slim for node) on Modal`

func (c *commonFlags) validate() error {
	if c.timeout < 0 {
		return usagef("--timeout must not be negative, got %v", c.timeout)
	}
	if c.lifetime < 0 {
		return usagef("--lifetime must not be negative, got %v", c.lifetime)
	}
	if c.cpus < 0 {
		return usagef("--cpus must not be negative, got %v", c.cpus)
	}
	if c.memory != "" {
		n, err := parseMemory(c.memory)
		if err != nil {
			return usagef("--memory %q: %v", c.memory, err)
		}
		c.memoryBytes = n
	}
	switch local.Isolation(c.isolation) {
	case local.IsolationNamespaces, local.IsolationNone:
	default:
		return usagef("unknown --isolation %q (want %q or %q)", c.isolation, local.IsolationNamespaces, local.IsolationNone)
	}
	image, steps, err := c.steps.resolve(c.image)
	if err != nil {
		return err
	}
	c.image, c.imageSteps = image, steps
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
	p, err := a.newProvider(cf.provider, providerOptions{isolation: cf.isolation, server: cf.server, oneShot: true, memory: cf.memoryBytes, cpus: cf.cpus})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); err != nil {
			a.errorf("closing the %s provider: %v", cf.provider, err)
		}
	}()

	if err := a.pullWithProgress(ctx, p, cf.image); err != nil {
		if ctx.Err() != nil {
			a.errorf("interrupted")
			return exitStatus(interruptCode(ctx))
		}
		return err
	}
	opts := &compute.CreateOptions{Network: compute.NetworkNone, Image: cf.image, ImageSteps: cf.imageSteps, ImageContext: cf.steps.fsys}
	if cf.network {
		opts.Network = compute.NetworkHost
	} else if cf.isolation == string(local.IsolationNone) {
		opts.Network = compute.NetworkDefault // unisolated: there is no restriction to ask for
	}
	switch {
	case cf.lifetime > 0:
		opts.Timeout = cf.lifetime
	case cf.timeout > 0:
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
	case errors.Is(err, compute.ErrStopped) && ctx.Err() == nil:
		// The sandbox ended under the program: its lifetime, most often.
		if info, ierr := sb.Info(context.WithoutCancel(ctx)); ierr == nil && info.Timeout > 0 &&
			!info.CreatedAt.IsZero() && time.Since(info.CreatedAt) >= info.Timeout {
			a.errorf("the sandbox reached the end of its %v lifetime and was destroyed, with the program; give it longer with --lifetime (e.g. --lifetime %v)", info.Timeout, 2*info.Timeout)
			return exitStatus(exitTimeout)
		}
		return err
	case errors.Is(err, compute.ErrOutOfMemory):
		limit := "its limit"
		if cf.memory != "" {
			limit = "its --memory " + cf.memory
		}
		a.errorf("the program was killed for going over the sandbox's memory (%s); give it more with --memory (e.g. --memory 2g)", limit)
		return exitStatus(exitOutOfMemory)
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
	project string
}

func (a *app) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] FILE [ARGS...] | -c CODE [ARGS...]",
		Short: "Run a Python or Node.js program in a fresh sandbox",
		Long: `Run a Python or Node.js program in a fresh sandbox, streaming its output,
and exit with its exit code.

"compute run main.py a b" behaves like "python3 main.py a b": FILE is
uploaded into the sandbox's working directory with its project (the
directory it is in, or --project DIR) and run there by name, with ARGS, so
__file__, sys.argv, imports of sibling modules and tracebacks work as on
this machine. The project is uploaded when it holds at most 2000 files and
64 MiB (.git, __pycache__, .venv and symbolic links are left out); past
that only FILE is, with a note. --project none uploads only FILE.

FILE's extension picks the runtime (.py: python; .js, .mjs, .cjs: node);
another extension needs --runtime. A FILE without one, "-" (the program on
standard input) and -c CODE are detected from the code: Node.js only when
it has strictly more Node.js markers (console., require(, const, let, =>,
===, ...) than Python ones (print(, import, def, None, ...).

Flags after FILE (or CODE) are the program's. A syntax error exits 1 with
the interpreter's message, as python3 and node do. Exit codes: the
program's own; 124 when --timeout or the sandbox's --lifetime ran out;
137 when it went over --memory; 127 when the runtime is not installed.`,
		Example: `  # A file; the runtime comes from the extension
  compute run examples/hello.py
  compute run examples/hello.js

  # With arguments, as python3 would run it
  compute run examples/hello.py --verbose input.txt

  # Inline code; the runtime is detected, or named
  compute run -c 'print(sum(range(10)))'
  compute run --runtime node -c 'console.log(process.version)'

  # Code from standard input
  echo 'import sys; print(sys.version)' | compute run -

  # Kill it after 2 seconds (exit code 124)
  compute run --timeout 2s -c 'while True: pass'

  # Feed the program this terminal's standard input
  printf '3\n4\n' | compute run --stdin -c 'import sys; print(sum(int(l) for l in sys.stdin))'`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.runCode(cmd.Context(), &f, cmd.Flags().Changed("code"), args)
		}),
	}
	fs := cmd.Flags()
	// Everything after FILE is the program's, flags included.
	fs.SetInterspersed(false)
	fs.StringVarP(&f.code, "code", "c", "", "program to run, instead of FILE")
	fs.StringVar(&f.runtime, "runtime", "", `runtime, "python" or "node" (default: from FILE's extension, else detected)`)
	fs.BoolVar(&f.stdin, "stdin", false, "forward standard input to the program")
	fs.StringVar(&f.project, "project", "", `directory uploaded with FILE (default: FILE's own); "none": only FILE`)
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
	var progArgs []string
	switch {
	case haveCode:
		code, progArgs = f.code, args
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
		code, progArgs = string(b), args[1:]
	default:
		return a.runFile(ctx, f, rt, args[0], args[1:])
	}
	if f.project != "" {
		return usagef("--project goes with a FILE to run")
	}
	opts := &compute.CodeOptions{
		Runtime:   rt,
		Args:      progArgs,
		Timeout:   f.common.timeout,
		Stdout:    a.stdout,
		Stderr:    a.stderr,
		MaxOutput: codeOutputCap,
	}
	if f.stdin {
		opts.Stdin = a.stdin
	}
	return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
		return sb.RunCode(ctx, code, opts)
	})
}

// What compute run uploads of a FILE's project at most: past either, only
// FILE goes.
const (
	maxProjectFiles = 2000
	maxProjectBytes = 64 << 20
)

// runFile runs a program file by name in the sandbox, as its interpreter
// would run it here: uploaded with its project into the sandbox's working
// directory, with its arguments.
func (a *app) runFile(ctx context.Context, f *runFlags, rt compute.Runtime, file string, args []string) error {
	fh, err := os.Open(file)
	if err != nil {
		return err
	}
	fi, err := fh.Stat()
	fh.Close()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return usagef("%s is not a regular file", file)
	}
	ext := filepath.Ext(file)
	switch byExt := runtimeFromExt(file); {
	case byExt != "" && rt != "" && rt != byExt:
		return usagef("--runtime %s contradicts the extension of %s (%s)", rt, file, byExt)
	case byExt != "":
		rt = byExt
	case rt == "" && ext != "":
		return usagef("cannot tell which runtime runs %s from its extension %q (.py runs with python; .js, .mjs and .cjs with node): give --runtime python or --runtime node", file, ext)
	case rt == "":
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		rt = compute.DetectRuntime(string(b))
	}
	upload, name, err := a.projectFiles(file, f.project)
	if err != nil {
		return err
	}
	argv := append([]string{"python3", "-u", name}, args...)
	if rt == compute.Node {
		argv = append([]string{"node", name}, args...)
	}
	opts := &compute.RunOptions{Timeout: f.common.timeout, Stdout: a.stdout, Stderr: a.stderr, MaxOutput: -1}
	if f.stdin {
		opts.Stdin = a.stdin
	}
	return a.inSandbox(ctx, &f.common, func(ctx context.Context, sb *compute.Sandbox) (*compute.Result, error) {
		if err := uploadFiles(ctx, sb, upload); err != nil {
			return nil, err
		}
		return sb.Run(ctx, argv, opts)
	})
}

// projectFiles lists what to upload for FILE (host path -> path in the
// sandbox, relative to its working directory) and FILE's own name there.
func (a *app) projectFiles(file, project string) (map[string]string, string, error) {
	only := map[string]string{file: filepath.Base(file)}
	if project == "none" {
		return only, filepath.Base(file), nil
	}
	explicit := project != ""
	if !explicit {
		project = filepath.Dir(file)
	}
	absProject, err := filepath.Abs(project)
	if err != nil {
		return nil, "", err
	}
	absFile, err := filepath.Abs(file)
	if err != nil {
		return nil, "", err
	}
	name, err := filepath.Rel(absProject, absFile)
	if err != nil || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
		return nil, "", usagef("--project %s does not contain %s", project, file)
	}
	files := map[string]string{}
	var total int64
	errTooBig := errors.New("too big")
	err = filepath.WalkDir(absProject, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "__pycache__", ".venv":
				if p != absProject {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // symbolic links and the like stay behind
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		if len(files) >= maxProjectFiles || total > maxProjectBytes {
			return errTooBig
		}
		rel, _ := filepath.Rel(absProject, p)
		files[p] = filepath.ToSlash(rel)
		return nil
	})
	switch {
	case errors.Is(err, errTooBig) && explicit:
		return nil, "", usagef("--project %s holds more than %d files or %d MiB, the most compute run uploads; name a smaller directory, or --project none", project, maxProjectFiles, maxProjectBytes>>20)
	case errors.Is(err, errTooBig):
		a.errorf("note: %s holds more than %d files or %d MiB, so only %s is uploaded; choose what goes with it with --project DIR", project, maxProjectFiles, maxProjectBytes>>20, filepath.Base(file))
		return only, filepath.Base(file), nil
	case err != nil:
		return nil, "", err
	}
	return files, filepath.ToSlash(name), nil
}

// uploadFiles copies host files into the sandbox, several at a time.
func uploadFiles(ctx context.Context, sb *compute.Sandbox, files map[string]string) error {
	fsys := sb.FileSystem()
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(files))
	var wg sync.WaitGroup
	for src, dst := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			data, err := os.ReadFile(src)
			if err == nil {
				err = fsys.WriteFile(ctx, dst, data)
			}
			if err != nil {
				errs <- fmt.Errorf("uploading %s: %w", src, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
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

// parseMemory reads a memory size the way docker's --memory does: a
// number with a unit b, k, m or g (powers of 1024); a bare number is MiB,
// since nobody means bytes.
func parseMemory(s string) (int64, error) {
	num, unit := strings.TrimSpace(strings.ToLower(s)), int64(1<<20)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, unit = v, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f <= 0 {
		return 0, errors.New("want a size such as 512m or 2g")
	}
	n := int64(f * float64(unit))
	if n < 16<<20 {
		return 0, errors.New("under the 16 MiB a sandbox needs to start")
	}
	return n, nil
}
