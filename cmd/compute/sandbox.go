package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/server/wire"
)

// sandboxFlags are the flags of the sandbox subcommands: which provider
// holds the sandboxes.
type sandboxFlags struct {
	provider string
	server   string
}

func (f *sandboxFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.provider, "provider", "", "provider that holds the sandboxes: modal (the default without --server); local sandboxes end with the command, so they cannot be managed by id")
	fs.StringVar(&f.server, "server", "", "manage the sandboxes of the compute server at this URL (see compute serve), with the token in $COMPUTE_TOKEN")
}

// openProvider starts the provider of a sandbox subcommand. The sandboxes
// it creates outlive it: their ids are for later commands.
func (a *app) openProvider(f *sandboxFlags, o providerOptions) (provider, error) {
	o.isolation = string(local.IsolationNamespaces)
	o.keep = true
	if f.server != "" {
		if f.provider != "" {
			return nil, usagef("--provider and --server cannot be combined: the server's own provider holds its sandboxes")
		}
		o.server = f.server
		return a.newProvider("local", o)
	}
	switch f.provider {
	case "":
		f.provider = "modal"
	case "local":
		return nil, usagef("the local provider's sandboxes end when this command exits, so they cannot be managed by id; use --provider modal, or --server URL for a compute server's (start one with compute serve)")
	}
	return a.newProvider(f.provider, o)
}

// withProvider runs fn with the provider of f, closed afterwards.
func (a *app) withProvider(f *sandboxFlags, fn func(p provider, c *compute.Compute) error) error {
	return a.withProviderOptions(f, providerOptions{}, fn)
}

// withProviderOptions is withProvider for a provider with options of its
// own (a create's --memory and --cpus).
func (a *app) withProviderOptions(f *sandboxFlags, o providerOptions, fn func(p provider, c *compute.Compute) error) error {
	p, err := a.openProvider(f, o)
	if err != nil {
		return err
	}
	defer p.Close()
	return fn(p, compute.New(compute.Config{Provider: p, NoFallback: true}))
}

func (a *app) sandboxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Create, list, inspect, use and destroy sandboxes by id",
		Long: `Manage sandboxes that outlive one command: Modal's (--provider modal, the
default here) or a compute server's (--server URL).

"create" prints the new sandbox's id on standard output; the other
commands take it. A sandbox lives until "destroy" or until its timeout.
Modal's credentials come from MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (or
~/.modal.toml).`,
		Example: `  id=$(compute sandbox create --timeout 30m --gpu T4)
  compute sandbox exec "$id" -- nvidia-smi
  compute sandbox exec "$id" -- python3 -c 'print(6 * 7)'
  compute sandbox shell "$id"
  compute sandbox info "$id"
  compute sandbox list
  compute sandbox destroy "$id"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.sandboxCreateCommand(), a.sandboxListCommand(), a.sandboxInfoCommand(),
		a.sandboxExecCommand(), a.sandboxShellCommand(), a.sandboxURLCommand(), a.sandboxDestroyCommand())
	return cmd
}

type createFlags struct {
	sf       sandboxFlags
	lifetime time.Duration
	runtime  string
	name     string
	env      []string
	dir      string
	network  bool
	image    string
	steps    imageStepFlags
	gpu      string
	cpus     float64
	memory   string
	ports    []int
}

func (a *app) sandboxCreateCommand() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [flags]",
		Short: "Create a sandbox and print its id",
		Long: `Create a sandbox and print its id on standard output. It runs until
"compute sandbox destroy" or its --timeout. On a terminal, standard error
shows the progress (image build, start).

The sandbox has no network unless --network is given, as with run and
exec. --image is the sandbox's OCI image on every provider (a server
takes it only when its operator allows images). --gpu, --cpus, --memory
and --port are Modal's (a server's sandboxes are sized by the server).`,
		Example: `  compute sandbox create
  compute sandbox create --lifetime 1h --runtime node
  compute sandbox create --server http://127.0.0.1:8080
  compute sandbox create --image python:3.12-slim
  compute sandbox create --provider modal --gpu A100 --image pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
  compute sandbox create --port 8080 --network`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.sandboxCreate(cmd.Context(), &f, cmd.Flags())
		}),
	}
	fs := cmd.Flags()
	f.sf.add(fs)
	fs.DurationVar(&f.lifetime, "lifetime", 0, "the sandbox's lifetime (10m, 2h); 0: the provider's default (5m on Modal, at most 24h)")
	fs.DurationVar(&f.lifetime, "timeout", 0, "the same as --lifetime")
	fs.MarkHidden("timeout")
	fs.StringVar(&f.runtime, "runtime", "", `default runtime, "python" or "node" (on Modal it also picks the image)`)
	fs.StringVar(&f.name, "name", "", "a name, shown by info and list")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "an environment variable of every command, KEY=VALUE (repeatable)")
	fs.StringVarP(&f.dir, "dir", "w", "", "default working directory (absolute)")
	fs.BoolVar(&f.network, "network", false, "give the sandbox network access (default: none)")
	fs.StringVar(&f.image, "image", "", imageFlagUsage)
	f.steps.add(fs)
	fs.StringVar(&f.gpu, "gpu", "", `Modal: GPUs, as "T4", "A100", "H100:2"`)
	fs.Float64Var(&f.cpus, "cpus", 0, "Modal: CPU cores to reserve, as 0.5 or 2")
	fs.Float64Var(&f.cpus, "cpu", 0, "the same as --cpus")
	fs.MarkHidden("cpu")
	fs.StringVarP(&f.memory, "memory", "m", "", "Modal: memory to reserve, as 512m or 2g (a bare number is MiB)")
	fs.IntSliceVar(&f.ports, "port", nil, "Modal: a port to expose through an HTTPS tunnel (repeatable); see compute sandbox url")
	return cmd
}

func (a *app) sandboxCreate(ctx context.Context, f *createFlags, fs *pflag.FlagSet) error {
	if f.lifetime < 0 {
		return usagef("--lifetime must not be negative, got %v", f.lifetime)
	}
	if f.cpus < 0 {
		return usagef("--cpus must not be negative, got %v", f.cpus)
	}
	var memory int64
	if f.memory != "" {
		var err error
		if memory, err = parseMemory(f.memory); err != nil {
			return usagef("--memory %q: %v", f.memory, err)
		}
	}
	rt := compute.Runtime(f.runtime)
	switch rt {
	case "", compute.Python, compute.Node:
	default:
		return usagef("unknown --runtime %q (want %q or %q)", f.runtime, compute.Python, compute.Node)
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	image, steps, err := f.steps.resolve(f.image)
	if err != nil {
		return err
	}
	if f.sf.server != "" {
		for _, name := range []string{"gpu", "cpus", "cpu", "memory", "port"} {
			if fs.Changed(name) {
				return usagef("--%s is a flag of the modal provider; a server's sandboxes are set up by the server", name)
			}
		}
	}
	mo := modal.SandboxOptions{GPU: f.gpu, EncryptedPorts: f.ports}
	return a.withProviderOptions(&f.sf, providerOptions{memory: memory, cpus: f.cpus}, func(p provider, _ *compute.Compute) error {
		var cp driver.Provider = p
		if mp, ok := p.(*modal.Provider); ok {
			cp = mp.With(mo)
		}
		if err := a.pullWithProgress(ctx, p, image); err != nil {
			return err
		}
		opts := &compute.CreateOptions{Timeout: f.lifetime, Runtime: rt, Name: f.name, Env: env, Dir: f.dir, Network: compute.NetworkNone, Image: image, ImageSteps: steps, ImageContext: f.steps.fsys}
		if f.network {
			opts.Network = compute.NetworkHost
		}
		sb, err := compute.New(compute.Config{Provider: cp, NoFallback: true}).Create(ctx, opts)
		if err != nil {
			return fmt.Errorf("creating a sandbox: %w", err)
		}
		fmt.Fprintln(a.stdout, sb.ID())
		return nil
	})
}

type listFlags struct {
	sf    sandboxFlags
	json  bool
	quiet bool
}

func (a *app) sandboxListCommand() *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List the running sandboxes",
		Long: `List the running sandboxes: on Modal, those this tool (or the Go library)
created in its app. One line each: id, status, age, name.`,
		Example: `  compute sandbox list
  compute sandbox list -q | xargs -r compute sandbox destroy
  compute sandbox list --json`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withProvider(&f.sf, func(_ provider, c *compute.Compute) error {
				list, err := c.List(ctx)
				if err != nil {
					return err
				}
				if f.quiet {
					for _, sb := range list {
						fmt.Fprintln(a.stdout, sb.ID())
					}
					return nil
				}
				infos := make([]*compute.Info, len(list))
				var wg sync.WaitGroup
				for i, sb := range list {
					wg.Go(func() {
						info, err := sb.Info(ctx)
						if err != nil {
							info = &compute.Info{ID: sb.ID(), Provider: sb.Provider(), Status: compute.StatusError}
						}
						infos[i] = info
					})
				}
				wg.Wait()
				sort.Slice(infos, func(i, j int) bool { return infos[i].CreatedAt.After(infos[j].CreatedAt) })
				if f.json {
					out := make([]wire.SandboxInfo, len(infos))
					for i, info := range infos {
						out[i] = wire.NewSandboxInfo(info)
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tAGE\tNAME")
				for _, info := range infos {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", info.ID, info.Status, age(info.CreatedAt), info.Name)
				}
				return tw.Flush()
			})
		}),
	}
	f.sf.add(cmd.Flags())
	cmd.Flags().BoolVar(&f.json, "json", false, "print the sandboxes' details as JSON")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only the ids")
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type infoFlags struct {
	sf   sandboxFlags
	json bool
}

func (a *app) sandboxInfoCommand() *cobra.Command {
	var f infoFlags
	cmd := &cobra.Command{
		Use:     "info [flags] ID",
		Short:   "Describe a sandbox",
		Example: "  compute sandbox info sb-01JQ...\n  compute sandbox info --json sb-01JQ...",
		Args:    wantArgs("a sandbox id", 1, 1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withProvider(&f.sf, func(_ provider, c *compute.Compute) error {
				sb, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				info, err := sb.Info(ctx)
				if err != nil {
					return err
				}
				if f.json {
					return writeJSON(a.stdout, wire.NewSandboxInfo(info))
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "id:\t%s\nprovider:\t%s\nstatus:\t%s\n", info.ID, info.Provider, info.Status)
				if info.Name != "" {
					fmt.Fprintf(tw, "name:\t%s\n", info.Name)
				}
				if info.Runtime != "" {
					fmt.Fprintf(tw, "runtime:\t%s\n", info.Runtime)
				}
				if !info.CreatedAt.IsZero() {
					fmt.Fprintf(tw, "created:\t%s (%s ago)\n", info.CreatedAt.Format(time.RFC3339), age(info.CreatedAt))
				}
				if info.Timeout > 0 {
					fmt.Fprintf(tw, "timeout:\t%s\n", info.Timeout)
				}
				keys := make([]string, 0, len(info.Metadata))
				for k := range info.Metadata {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(tw, "metadata %s:\t%s\n", k, info.Metadata[k])
				}
				for _, l := range info.Limits {
					fmt.Fprintf(tw, "limit:\t%s\n", l)
				}
				return tw.Flush()
			})
		}),
	}
	f.sf.add(cmd.Flags())
	cmd.Flags().BoolVar(&f.json, "json", false, "print the details as JSON")
	return cmd
}

func (a *app) sandboxDestroyCommand() *cobra.Command {
	var f sandboxFlags
	cmd := &cobra.Command{
		Use:   "destroy [flags] ID...",
		Short: "Destroy sandboxes",
		Long: `Destroy sandboxes by id. Destroying a sandbox that is already gone is not
an error.`,
		Example: "  compute sandbox destroy sb-01JQ...\n  compute sandbox list -q | xargs -r compute sandbox destroy",
		Args:    wantArgs("one or more sandbox ids", 1, -1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withProvider(&f, func(_ provider, c *compute.Compute) error {
				errs := make([]error, len(args))
				var wg sync.WaitGroup
				for i, id := range args {
					wg.Go(func() { errs[i] = c.Destroy(ctx, id) })
				}
				wg.Wait()
				return errors.Join(errs...)
			})
		}),
	}
	f.add(cmd.Flags())
	return cmd
}

type sandboxExecFlags struct {
	sf      sandboxFlags
	env     []string
	dir     string
	stdin   bool
	timeout time.Duration
}

func (a *app) sandboxExecCommand() *cobra.Command {
	var f sandboxExecFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] ID [--] COMMAND [ARGS...]",
		Short: "Run a command in a sandbox",
		Long: `Run a command in an existing sandbox, streaming its output, and exit with
its exit code (127 when the command does not exist, 124 when --timeout
killed it). The sandbox keeps running.`,
		Example: `  compute sandbox exec sb-01JQ... -- ls -la
  echo hello | compute sandbox exec --stdin sb-01JQ... -- tr a-z A-Z`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("want a sandbox id and a command: compute sandbox exec [flags] ID -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:] // flags stop at ID, so "--" after it is left in args
			}
			if len(argv) == 0 {
				return usagef("missing command: compute sandbox exec [flags] ID -- COMMAND [ARGS...]")
			}
			return a.sandboxExec(cmd.Context(), &f, args[0], argv)
		}),
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	f.sf.add(fs)
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, KEY=VALUE (repeatable)")
	fs.StringVarP(&f.dir, "dir", "w", "", "working directory (default: the sandbox's own)")
	fs.BoolVarP(&f.stdin, "stdin", "i", false, "forward standard input to the command")
	fs.DurationVar(&f.timeout, "timeout", 0, "kill the command after this long and exit 124")
	return cmd
}

func (a *app) sandboxExec(ctx context.Context, f *sandboxExecFlags, id string, argv []string) error {
	if f.timeout < 0 {
		return usagef("--timeout must not be negative, got %v", f.timeout)
	}
	if argv[0] == "" {
		return usagef("empty command name")
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	// After a signal, a provider that stops answering cannot keep the CLI
	// alive (the sandbox itself stays: it was not made here).
	defer a.exitIfStuck(ctx, func() string { return "" })()
	return a.withProvider(&f.sf, func(_ provider, c *compute.Compute) error {
		sb, err := c.Get(ctx, id)
		if err != nil {
			return err
		}
		opts := &compute.RunOptions{Env: env, Dir: f.dir, Timeout: f.timeout, Stdout: a.stdout, Stderr: a.stderr, MaxOutput: -1}
		if f.stdin {
			opts.Stdin = a.stdin
		}
		res, err := sb.Run(ctx, argv, opts)
		switch {
		case errors.Is(err, compute.ErrTimeout):
			a.errorf("timed out after %v", f.timeout)
			return exitStatus(exitTimeout)
		case err != nil && ctx.Err() != nil:
			a.errorf("interrupted")
			return exitStatus(exitInterrupted)
		case err != nil:
			return err
		case res.ExitCode != 0:
			return exitStatus(res.ExitCode)
		}
		return nil
	})
}

type sandboxShellFlags struct {
	sf      sandboxFlags
	env     []string
	dir     string
	timeout time.Duration
}

func (a *app) sandboxShellCommand() *cobra.Command {
	var f sandboxShellFlags
	cmd := &cobra.Command{
		Use:   "shell [flags] ID [-- COMMAND [ARGS...]]",
		Short: "Open an interactive shell in a sandbox",
		Long: `Open an interactive shell in an existing sandbox, as "docker exec -it"
does: a login shell (bash where the sandbox has it, else sh) on a terminal
of its own, or COMMAND with ARGS. This terminal is put in raw mode, so
every key goes to the program, and the sandbox's terminal follows this
window's size; it is restored when the program exits, and compute exits
with the program's exit code. The sandbox keeps running: leave with
"exit" and come back later, or destroy it with "compute sandbox destroy".

When standard input is not a terminal (a pipe, a file), there is no
terminal and no raw mode: this behaves like "compute sandbox exec --stdin".
COMMAND reads standard input; without COMMAND the shell runs the script
that standard input holds.`,
		Example: `  compute sandbox shell sb-01JQ...
  compute sandbox shell sb-01JQ... -- python3
  compute sandbox shell --server http://127.0.0.1:8080 lsb-...
  echo 'ls -la' | compute sandbox shell sb-01JQ...`,
		Args: wantArgs("a sandbox id, then optionally -- COMMAND [ARGS...]", 1, -1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			argv := args[1:]
			if len(argv) > 0 && argv[0] == "--" {
				argv = argv[1:] // flags stop at ID, so "--" after it is left in args
			}
			return a.sandboxShell(cmd.Context(), &f, args[0], argv)
		}),
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	f.sf.add(fs)
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, KEY=VALUE (repeatable)")
	fs.StringVarP(&f.dir, "dir", "w", "", "working directory (default: the sandbox's own)")
	fs.DurationVar(&f.timeout, "timeout", 0, "hang up after this long and exit 124")
	return cmd
}

func (a *app) sandboxURLCommand() *cobra.Command {
	var f sandboxFlags
	cmd := &cobra.Command{
		Use:   "url [flags] ID PORT",
		Short: "Print the public URL of a sandbox's port (Modal)",
		Long: `Print the HTTPS URL of Modal's tunnel to a port of the sandbox; the port
must have been exposed at create (compute sandbox create --port PORT).`,
		Example: "  compute sandbox url sb-01JQ... 8080",
		Args:    wantArgs("a sandbox id and a port", 2, 2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[1])
			if err != nil || port < 1 || port > 65535 {
				return usagef("PORT %q is not a port number", args[1])
			}
			ctx := cmd.Context()
			return a.withProvider(&f, func(_ provider, c *compute.Compute) error {
				sb, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				msb, ok := sb.Driver().(*modal.Sandbox)
				if !ok {
					return fmt.Errorf("the %s provider's sandboxes have no public URLs", sb.Provider())
				}
				u, err := msb.URL(ctx, port)
				if err != nil {
					// The library's advice names its Go option; a CLI
					// user exposes ports with a flag.
					return errors.New(strings.Replace(err.Error(), "expose ports at create with SandboxOptions.EncryptedPorts, H2Ports or UnencryptedPorts",
						"expose a port when creating the sandbox: compute sandbox create --port PORT", 1))
				}
				fmt.Fprintln(a.stdout, strings.TrimSpace(u))
				return nil
			})
		}),
	}
	f.add(cmd.Flags())
	return cmd
}
