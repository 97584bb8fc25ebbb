// Package guest is the program the Modal emulator runs inside its
// sandboxes: Modal's filesystem tool (modal-sandbox-fs-tools and its JSON
// protocol), the relay behind port tunnels, readiness probes, and the
// archiver behind filesystem snapshots.
//
// The emulator copies the executable that imports this package (a test
// binary, the compute CLI) into a sandbox as
// /__modal/.bin/modal-sandbox-fs-tools and runs it there like any other
// command; the init function below recognises that name and runs the
// requested mode instead of the program's main. All the work therefore
// happens inside the sandbox, with the sandbox's view of its files and its
// own loopback network.
package guest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Names and paths shared with the emulator.
const (
	// ToolName is the base name of Modal's filesystem tool, and of the
	// guest executable inside a sandbox.
	ToolName = "modal-sandbox-fs-tools"
	// ToolPath is where Modal's SDK expects the tool.
	ToolPath = "/__modal/.bin/" + ToolName
	// ModeEnv selects the guest's mode; unset means ModeFSTools.
	ModeEnv = "MODAL_EMULATOR_GUEST"
)

// Modes.
const (
	// ModeFSTools: argv[1] is one JSON command of Modal's fs-tools protocol.
	ModeFSTools = "fs-tools"
	// ModeConnect: argv[1] is a port; relay stdin and stdout to a TCP
	// connection to it on the sandbox's loopback.
	ModeConnect = "connect"
	// ModeProbe: argv[1] is a port; exit 0 when something accepts TCP
	// connections on it, 1 otherwise.
	ModeProbe = "probe-tcp"
	// ModeSnapshot: write a tar archive to stdout. With no argument, of
	// every file on the sandbox's writable file systems; with a path, of
	// that directory's tree, names relative to it.
	ModeSnapshot = "snapshot"
	// ModeRestore: extract the tar archive on stdin under argv[1] ("/"
	// when absent).
	ModeRestore = "restore"
)

func init() {
	if filepath.Base(os.Args[0]) != ToolName {
		return
	}
	os.Exit(Main(os.Getenv(ModeEnv), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Main runs one mode with its arguments (argv without argv[0]) and returns
// the exit code.
func Main(mode string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch mode {
	case "", ModeFSTools:
		return fsTools(args, stdin, stdout, stderr)
	case ModeConnect:
		return connect(args, stdin, stdout, stderr)
	case ModeProbe:
		return probe(args, stderr)
	case ModeSnapshot:
		return snapshot(args, stdout, stderr)
	case ModeRestore:
		return restore(args, stdin, stderr)
	default:
		fmt.Fprintf(stderr, "%s: unknown mode %q\n", ToolName, mode)
		return 2
	}
}
