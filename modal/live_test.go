package modal_test

import (
	"testing"

	"github.com/computesdk-go/compute/computetest"
	"github.com/computesdk-go/compute/modal"
)

// TestLive runs the conformance suite against Modal itself, when
// MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set (MODAL_SERVER_URL and
// MODAL_ENVIRONMENT are honoured too). It creates sandboxes in the app
// "computesdk-test", a few at a time; they cost money. With
// COMPUTESDK_MODAL_GPU set (to a GPU type, "T4"), it also runs the suite
// on GPU (V1) sandboxes.
func TestLive(t *testing.T) {
	if live.tokenID == "" || live.tokenSecret == "" {
		t.Skip("skipped: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to run the conformance suite against Modal itself (the emulator runs it in TestConformanceV2 and TestConformanceV1GPU)")
	}
	p, err := modal.New(modal.Config{
		TokenID: live.tokenID, TokenSecret: live.tokenSecret,
		ServerURL: live.serverURL, Environment: live.environment,
		App: "computesdk-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// python:3.13-slim has no node: the suite checks that RunCode with
	// node says so instead.
	opts := []computetest.Option{computetest.SkipNode(), computetest.ConcurrentSandboxes(5)}
	t.Run("V2", func(t *testing.T) { computetest.Run(t, p, opts...) })
	if live.gpu != "" {
		t.Run("V1-GPU", func(t *testing.T) { computetest.Run(t, p.With(modal.SandboxOptions{GPU: live.gpu}), opts...) })
	} else {
		t.Log("GPU sandboxes not run: set COMPUTESDK_MODAL_GPU=T4 to run the suite on them too")
	}
}
