// Command compute-agent is the local provider's sandbox agent as a
// program of its own: package agent's init, which turns the process the
// host started into the agent, and nothing else. Package agentbin embeds
// it (go generate ./local/internal/agentbin builds it), so that a sandbox
// starts this small static program rather than re-executing the host's,
// whose dynamic loading and package initialisers would run in every
// sandbox first.
package main

import (
	"fmt"
	"os"

	_ "github.com/computesdk-go/compute/local/internal/agent" // its init becomes the agent
)

func main() {
	// Reached only when the host did not start this program: the agent's
	// init takes over the process (and never returns) when it did.
	fmt.Fprintln(os.Stderr, "compute-agent: this is the sandbox agent of ComputeSDK's local provider; package local starts it, with its own arguments and environment, inside a sandbox. There is nothing to run it for by hand.")
	os.Exit(2)
}
