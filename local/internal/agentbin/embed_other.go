//go:build linux && !amd64 && !arm64

package agentbin

// program is empty: no agent is embedded for this architecture, and the
// host re-executes itself as the agent.
var program []byte
