package modal_test

import (
	"testing"

	"github.com/computesdk-go/compute/computetest"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// The shared conformance suite through Modal's SDK against the emulator:
// V2 sandboxes (Modal's default) and V1 ones (those with a GPU). Modal
// cannot resize a running terminal.
func TestConformanceV2(t *testing.T) {
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	computetest.Run(t, p, computetest.RichPythonLikeHost(), computetest.NoTerminalResize())
}

func TestConformanceV1GPU(t *testing.T) {
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	computetest.Run(t, p.With(modal.SandboxOptions{GPU: "T4"}), computetest.RichPythonLikeHost(), computetest.NoTerminalResize())
}
