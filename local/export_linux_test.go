//go:build linux

package local

import (
	"fmt"
	"os"
)

// SetHardening turns sandbox confinement and cgroup limits on or off, for
// the benchmark that measures what they cost. Not safe for concurrent use
// with Create.
func SetHardening(on bool) { hardening = on }

// Reserves reports how many sandboxes the provider holds ready: with the
// host's root, without a root (for any image), and with the root of the
// image the last image Create named.
func (p *Provider) Reserves() (host, bare, image int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hostReserve.spares), len(p.bareReserve.spares), len(p.imageReserve.spares)
}

// UseEmbeddedAgent chooses between the embedded agent program (the
// default) and this test binary re-executed as the agent.
func UseEmbeddedAgent(on bool) { noEmbeddedAgent.Store(!on) }

// SetEmbeddedAgent makes path stand for the embedded agent program until
// restore is called, which also forgets that the kernel refused one.
func SetEmbeddedAgent(path string) (restore func()) {
	testAgentProgram.Store(&path)
	return func() {
		testAgentProgram.Store(nil)
		embeddedRefused.Store(false)
	}
}

// AgentExe is where the agent process of sb (a sandbox of this
// package, from Provider.Create) runs its program from, as /proc shows it.
func AgentExe(sb any) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/exe", sb.(*sandbox).agent.Process.Pid))
}

// AgentProgram is the program the next sandbox's agent starts from.
func AgentProgram() string { return agentPath() }
