//go:build linux

package agentbin_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/local/internal/agentbin"
	"github.com/computesdk-go/compute/local/internal/agentbin/srchash"
)

// The embedded agents must be built from the agent's sources as they are:
// an agent changed without regenerating would go on running as it was.
func TestEmbeddedAgentCurrent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("the go command is needed to list the agent's sources: %v", err)
	}
	sum, err := srchash.Sum()
	if err != nil {
		t.Fatal(err)
	}
	if sum != agentbin.SourceHash {
		t.Fatalf("the sandbox agent's sources changed since the embedded agents were built (with %s); rebuild them:\n\tgo generate ./local/internal/agentbin\n(sources %s, embedded %s)", agentbin.BuiltWith, sum, agentbin.SourceHash)
	}
}

// Path gives the embedded program, which runs from it and, started by
// hand rather than by the host, says what it is and exits 2; and nothing
// can write to it.
func TestPath(t *testing.T) {
	path, err := agentbin.Path()
	if errors.Is(err, agentbin.ErrNotEmbedded) {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := agentbin.Path(); again != path {
		t.Errorf("second Path = %q; want the first, %q", again, path)
	}
	out, err := exec.Command(path).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "sandbox agent") {
		t.Errorf("running %s by hand: %v, output %q; want exit 2 and what it is", path, err, out)
	}
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		if _, err := f.Write([]byte{0}); err == nil {
			t.Errorf("the agent's memory file could be written")
		}
		f.Close()
	}
	if err := os.Truncate(path, 0); err == nil {
		t.Errorf("the agent's memory file could be truncated")
	}
}
