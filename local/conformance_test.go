//go:build linux

package local_test

import (
	"testing"

	"github.com/computesdk-go/compute/computetest"
	"github.com/computesdk-go/compute/local"
)

// The shared conformance suite, on the default (isolated) local provider
// and on the unisolated one.
func TestConformance(t *testing.T) {
	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	computetest.Run(t, p, computetest.RichPythonLikeHost())
}

func TestConformanceIsolationNone(t *testing.T) {
	p, err := local.New(local.Options{Isolation: local.IsolationNone})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	computetest.Run(t, p, computetest.RichPythonLikeHost())
}
