package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent is the host program re-executed, and Go initialises a
// program's packages in dependency order with ties broken by import
// path: a dependency that sorts late (net, path/filepath, regexp, ...)
// makes the agent wait for the initialisers of nearly every package
// linked into the host program, libraries the agent never uses (gRPC,
// the Modal SDK, protobuf, ...). Without them the agent's own code runs
// about 65 initialisers earlier: 7 ms sooner per sandbox on a 2-CPU
// machine (docs/performance.md). This keeps them out.
func TestAgentStartsEarly(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the agent's dependencies:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/computesdk-go/compute/local/internal/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	late := map[string]bool{
		"net": true, "path/filepath": true, "regexp": true, "crypto/rand": true,
		"os/exec": true, "net/http": true, "math/rand": true, "math/rand/v2": true,
		"google.golang.org/grpc": true, "google.golang.org/protobuf/proto": true,
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list gave %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		if late[d] {
			t.Errorf("the agent depends on %s, which sorts late in Go's initialisation order: every sandbox's agent would run most of the host program's package initialisers before its own code", d)
		}
		if d == "github.com/elastic/go-seccomp-bpf" || d == "golang.org/x/net/bpf" {
			t.Errorf("the agent depends on %s: the host assembles the seccomp filters (package seccompfilter), once per process, instead of every sandbox's agent (go-seccomp-bpf's system call tables alone took 0.6-0.9 ms of each agent's start)", d)
		}
	}
}
