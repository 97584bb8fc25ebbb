// Package agent is the local provider's code that runs inside a sandbox:
// the agent, the sandbox's first process, which builds its root, confines
// the thread that starts sandboxed processes, and runs every command and
// file operation the host (package local) asks for over the control
// socket, resolving every path from outside inside the sandbox's root.
// The messages between the two sides are in package agentproto.
//
// The agent is the host's own program re-executed. Importing this package
// (package local does) installs the init that turns such a process into
// the agent before main runs; in any other process it does nothing. The
// agent runs on Linux only.
package agent
