package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/mcp"
)

type mcpFlags struct {
	common      commonFlags
	allowImages bool
	maxOutput   int
}

func (a *app) mcpCommand() *cobra.Command {
	var f mcpFlags
	cmd := &cobra.Command{
		Use:   "mcp [flags]",
		Short: "Serve sandboxes to an AI agent over MCP (stdio)",
		Long: `Serve sandboxes to an AI agent as Model Context Protocol tools, over
standard input and output, until the input ends (the agent closes the
session), Ctrl-C or SIGTERM. Then every sandbox of the session is
destroyed. Nothing but MCP messages is written to standard output; logs
go to standard error.

Tools: run_code (Python or JavaScript in a persistent interpreter: the
agent's variables survive between calls; charts come back as images),
run_command (a shell command), write_file, read_file, list_files,
create_sandbox, destroy_sandbox, list_sandboxes. Calls without
sandbox_id use the session's default sandbox, created on first use.

Sandboxes have no network unless --network is given (which also lets the
agent ask for network in create_sandbox). They run --image (an OCI image,
on every provider) or the provider's default; the agent may name other
registry images in create_sandbox only with --allow-images (an image is
pulled with this machine's network and credentials on local). --server URL uses a compute
server's sandboxes (token in $COMPUTE_TOKEN); "compute serve" also serves
these tools itself, over HTTP at /mcp.`,
		Example: `  # Register it with an MCP client (Claude Code, ...)
  claude mcp add compute -- compute mcp

  # In a client's JSON configuration (Claude Desktop, Cursor, ...)
  {"mcpServers": {"compute": {"command": "compute", "args": ["mcp"]}}}

  # Sandboxes with network, 2 GiB of memory, living up to 4 hours
  compute mcp --network --memory 2g --lifetime 4h

  # Sandboxes from an OCI image, and the agent may choose others
  compute mcp --image python:3.12-slim --allow-images

  # On Modal, from an image of your own
  compute mcp --provider modal --image python:3.13-slim`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.serveMCP(cmd.Context(), &f)
		}),
	}
	fs := cmd.Flags()
	c := &f.common
	fs.StringVar(&c.provider, "provider", "local", "provider that runs the sandboxes (available: "+strings.Join(providerNames(defaultProviders), ", ")+")")
	fs.StringVar(&c.server, "server", "", "use the sandboxes of the compute server at this URL (see compute serve), with the token in $COMPUTE_TOKEN")
	fs.DurationVar(&c.timeout, "timeout", mcp.DefaultRunTimeout, "interrupt a run_code cell, or kill a run_command without timeout_seconds, after this long; 0: no limit but the sandbox's lifetime")
	fs.DurationVar(&c.lifetime, "lifetime", mcp.DefaultLifetime, "each sandbox's lifetime, after which it is destroyed (create_sandbox's timeout_seconds overrides it)")
	fs.StringVarP(&c.memory, "memory", "m", "", "memory limit of each sandbox, as 512m or 2g. Default: 1g on local")
	fs.Float64Var(&c.cpus, "cpus", 0, "CPUs each sandbox may use, as 0.5 or 2; default: 1 on local")
	fs.BoolVar(&c.network, "network", false, "give the sandboxes the host's network, and let the agent ask for it (default: no network)")
	fs.StringVar(&c.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" runs the agent's code as plain host processes, NOT isolated: trusted code only`)
	fs.StringVar(&c.image, "image", "", strings.Replace(imageFlagUsage, "the sandbox's", "the sandboxes'", 1))
	fs.BoolVar(&f.allowImages, "allow-images", false, "let the agent name other registry images in create_sandbox (pulled with this machine's network, disk and registry credentials on local)")
	fs.IntVar(&f.maxOutput, "max-output", mcp.DefaultMaxOutput, "most characters of text one tool call gives back to the agent (the middle of longer output is cut, with a note); -1: no cap")
	return cmd
}

func (a *app) serveMCP(ctx context.Context, f *mcpFlags) error {
	cf := &f.common
	if err := cf.validate(); err != nil {
		return err
	}
	switch {
	case f.maxOutput == 0 || f.maxOutput < -1:
		return usagef("--max-output must be positive, or -1 for no cap; got %d", f.maxOutput)
	}
	if cf.isolation == string(local.IsolationNone) {
		a.errorf("WARNING: --isolation none: the agent's code runs as plain processes on this machine, " +
			"with this user's access to its files, processes and network; use it only for code you trust")
	}
	p, err := a.newProvider(cf.provider, providerOptions{isolation: cf.isolation, server: cf.server, memory: cf.memoryBytes, cpus: cf.cpus})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); err != nil {
			a.errorf("closing the %s provider: %v", cf.provider, err)
		}
	}()

	if err := a.pullWithProgress(ctx, p, cf.image); err != nil {
		return err
	}
	create := &compute.CreateOptions{Network: compute.NetworkNone, Timeout: cf.lifetime, Image: cf.image}
	if cf.network {
		create.Network = compute.NetworkHost
	} else if cf.isolation == string(local.IsolationNone) {
		create.Network = compute.NetworkDefault // unisolated: there is no restriction to ask for
	}
	runTimeout := cf.timeout
	if runTimeout == 0 {
		runTimeout = -1
	}
	c := compute.New(compute.Config{Provider: p, NoFallback: true})
	opts := &mcp.Options{
		MaxOutput:    f.maxOutput,
		Create:       create,
		AllowNetwork: cf.network,
		AllowImages:  f.allowImages,
		RunTimeout:   runTimeout,
		Logger:       slog.New(slog.NewTextHandler(a.stderr, nil)),
	}
	srv := mcp.NewServer(c, opts)
	defer a.exitIfStuck(ctx, func() string { return " (the session's sandboxes may run until their lifetime ends)" })()
	err = srv.ServeStdio(ctx, a.stdin, a.stdout)
	if cerr := srv.Close(); cerr != nil {
		a.errorf("%v", cerr)
	}
	switch {
	case ctx.Err() != nil:
		return exitStatus(interruptCode(ctx))
	case err != nil:
		return fmt.Errorf("mcp: %w", err)
	}
	return nil
}
