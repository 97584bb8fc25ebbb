// Package agent is the local provider's code that runs inside a sandbox:
// the agent, the sandbox's first process, which builds its root, confines
// the thread that starts sandboxed processes, and runs every command and
// file operation the host (package local) asks for over the control
// socket, resolving every path from outside inside the sandbox's root.
// The messages between the two sides are in package agentproto.
//
// Importing this package installs the init that turns a process the host
// started as the agent into the agent before main runs; in any other
// process it does nothing. The host starts the small program of
// cmd/compute-agent, embedded by package agentbin, or where that cannot
// run, re-executes its own program, which imports this package too. The
// agent runs on Linux only.
package agent
