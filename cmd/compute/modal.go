package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// modalCommand is "compute modal": tools for Modal users.
func (a *app) modalCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "modal",
		Short: "Tools for Modal users (a local Modal emulator)",
		Long: `Tools for Modal users.

"compute modal emulate" runs a local server that speaks Modal's gRPC
protocol, so that programs written against Modal's official SDKs run
offline, against sandboxes on this machine.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.modalEmulateCommand())
	return cmd
}

type emulateFlags struct {
	addr         string
	latency      time.Duration
	maxSandboxes int
	tokenID      string
	tokenSecret  string
	network      bool
	imageFiles   string
}

func (a *app) modalEmulateCommand() *cobra.Command {
	var f emulateFlags
	cmd := &cobra.Command{
		Use:   "emulate [flags]",
		Short: "Run a local Modal emulator until interrupted",
		Long: `Run a local server that speaks Modal's gRPC protocol (the control plane and
the task command router, on one port) until Ctrl-C or SIGTERM, then
destroy every sandbox it started.

It prints the environment variables that point Modal's SDK at it, as
"export NAME=value" lines on standard output; diagnostics go to standard
error. Sandboxes run on this machine, isolated by the local provider, with
no network unless --network is given. A sandbox of a registry image sees
the image's files, pulled into this machine's image store (see compute
image) as Modal pulls it, so a program sees offline what it will see on
Modal; an image that cannot be pulled, an image with Dockerfile commands
(built here with this machine's programs) and --image-files host run on
this machine's programs (python3, node, ...) instead, and the log on
standard error says so, image by image.

Modal's Go SDK (github.com/modal-labs/modal-client/go v0.11.1) works
against it unchanged: apps, images, secrets, V1 and V2 sandboxes, exec,
the filesystem API, tags, names, listing, tunnels and snapshots.`,
		Example: `  # In one terminal
  compute modal emulate --addr 127.0.0.1:7070

  # In another, paste the printed lines, then run your program
  export MODAL_SERVER_URL=http://127.0.0.1:7070
  export MODAL_TOKEN_ID=ak-...
  export MODAL_TOKEN_SECRET=as-...
  go run ./my-modal-program

  # Keep the environment in a file, in the background
  compute modal emulate > modal.env & sleep 1; . ./modal.env

  # Make every round trip take 20ms, as against the real cloud; at most 5 sandboxes
  compute modal emulate --latency 20ms --max-sandboxes 5`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if f.latency < 0 {
				return usagef("--latency must not be negative, got %v", f.latency)
			}
			if f.maxSandboxes < 0 {
				return usagef("--max-sandboxes must not be negative, got %d", f.maxSandboxes)
			}
			switch modaltest.ImageFiles(f.imageFiles) {
			case modaltest.ImageFilesPull, modaltest.ImageFilesCached:
			case "host":
				f.imageFiles = string(modaltest.ImageFilesHost)
			default:
				return usagef("unknown --image-files %q (want pull, cached or host)", f.imageFiles)
			}
			srv, err := modaltest.NewServer(modaltest.Options{
				Addr:         f.addr,
				Latency:      f.latency,
				MaxSandboxes: f.maxSandboxes,
				TokenID:      f.tokenID,
				TokenSecret:  f.tokenSecret,
				HostNetwork:  f.network,
				ImageFiles:   modaltest.ImageFiles(f.imageFiles),
				Logger:       slog.New(slog.NewTextHandler(a.stderr, nil)),
			})
			if err != nil {
				return err
			}
			for _, kv := range srv.Env() {
				fmt.Fprintf(a.stdout, "export %s\n", kv)
			}
			fmt.Fprintf(a.stderr, "compute: Modal emulator listening on %s; press Ctrl-C to stop\n", srv.Addr)
			<-cmd.Context().Done()
			fmt.Fprintln(a.stderr, "compute: stopping the Modal emulator")
			return srv.Close()
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.addr, "addr", "127.0.0.1:0", "address to listen on (a loopback address: the SDK reaches the command router in plaintext only there); port 0 picks a free one")
	fs.DurationVar(&f.latency, "latency", 0, "delay every RPC by this much (20ms, 100ms), to make round trips visible")
	fs.IntVar(&f.maxSandboxes, "max-sandboxes", 0, "fail sandbox creation with ResourceExhausted beyond this many live sandboxes; 0: no limit")
	fs.StringVar(&f.tokenID, "token-id", "", "token id to accept (default: a random one, printed)")
	fs.StringVar(&f.tokenSecret, "token-secret", "", "token secret to accept (default: a random one, printed)")
	fs.BoolVar(&f.network, "network", false, "give sandboxes this machine's network, unless created with BlockNetwork (default: loopback only)")
	fs.StringVar(&f.imageFiles, "image-files", string(modaltest.ImageFilesPull), `where a registry image's files come from: "pull" (the image store, pulling what it lacks), "cached" (the image store only, no registry) or "host" (none: this machine's programs)`)
	return cmd
}
