// Package modal is the compute provider for Modal (https://modal.com):
// sandboxes in Modal's serverless containers, with GPUs, through Modal's
// official Go SDK (github.com/modal-labs/modal-client/go, v0.11.1).
//
//	p, err := modal.New(modal.Config{}) // MODAL_TOKEN_ID, MODAL_TOKEN_SECRET
//	if err != nil { ... }
//	defer p.Close()
//	c := compute.New(compute.Config{Provider: p})
//	sb, err := c.Create(ctx, nil)
//	defer sb.Destroy(context.Background())
//	res, err := sb.RunCode(ctx, `print("hello from Modal")`, nil)
//
// Everything of package compute works: RunCode, RunCommand, Cmd,
// FileSystem, Terminal, Info, Get, List and Destroy (a terminal is
// Modal's PTY exec, of the size asked for at start: Modal cannot resize
// a running one, so Terminal.Resize reports compute.ErrUnsupported).
// Modal's own options (image,
// GPU, CPU, memory, secrets, volumes, ports, network, names, tags) are
// SandboxOptions, given for every sandbox in Config.Sandbox or for one
// kind of sandbox with Provider.With. Modal's extras are methods of
// *Sandbox, reached with sb.Driver().(*modal.Sandbox): URL and Tunnels for
// exposed ports, Snapshot for a filesystem image to start new sandboxes
// from, and Modal for the SDK's own handle.
//
// Every call honours its context. A command ends by its
// RunOptions.Timeout or its context's end plus at most KillGrace, even
// when Modal stops answering; a kill Modal refuses or does not confirm is
// an error saying the command may still be running, never reported as a
// kill. With no deadline at all, waits still end when Modal stops
// answering: a command whose output Modal stops serving (after the SDK's
// retries, about 10 s) is killed and fails; one whose exit status does
// not come within 10 s of the end of its output is checked on (an exec
// that reports whether it still runs) and fails if it has exited or the
// check fails; a filesystem operation still running after 30 s is checked
// on every 30 s (an exec whose exit status must come within 10 s) and
// fails when the check does.
//
// Tests run against package modaltest, a local server that speaks Modal's
// protocol: set Config.ServerURL to its URL and the tokens to its pair.
package modal
