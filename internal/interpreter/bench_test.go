package interpreter

import (
	"context"
	"os/exec"
	"sort"
	"testing"
	"time"
)

// benchCell measures a warm cell's round trip: host -> program -> host.
// p50-ns is reported beside the mean because a noisy machine skews means.
func benchCell(b *testing.B, p *proc, code string) {
	p.value(b, code) // warm up
	d := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ex, err := p.s.Run(ctx, code, nil)
		d = append(d, time.Since(t0))
		if err != nil || ex.Error != nil || len(ex.Results) != 1 {
			b.Fatalf("%v %+v", err, ex)
		}
	}
	b.StopTimer()
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
}

func BenchmarkPythonCell(b *testing.B) {
	b.Run("ipython", func(b *testing.B) { benchCell(b, startPython(b), "1 + 1") })
	b.Run("plain", func(b *testing.B) { benchCell(b, startPython(b, "-S"), "1 + 1") })
}

func BenchmarkNodeCell(b *testing.B) {
	benchCell(b, startNode(b), "1 + 1")
}

// benchStart measures starting the program until it is ready for cells.
func benchStart(b *testing.B, argv []string) {
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		s := NewSession(stdin, stdout)
		if _, err := s.Ready(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		_ = cmd.Wait()
		b.StartTimer()
	}
}

func BenchmarkPythonStart(b *testing.B) {
	b.Run("ipython", func(b *testing.B) {
		needPython(b, "IPython")
		benchStart(b, hostArgv(b, "python"))
	})
	b.Run("plain", func(b *testing.B) {
		needPython(b)
		benchStart(b, hostArgv(b, "python", "-S"))
	})
}

// BenchmarkPythonImportIPython is the yardstick for BenchmarkPythonStart:
// what importing IPython alone costs.
func BenchmarkPythonImportIPython(b *testing.B) {
	needPython(b, "IPython")
	for i := 0; i < b.N; i++ {
		if err := exec.Command(hostPython, "-c", "import IPython").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNodeStart(b *testing.B) {
	needNode(b)
	benchStart(b, hostArgv(b, "node"))
}

// BenchmarkNodeBare is BenchmarkNodeStart's yardstick: node doing nothing.
func BenchmarkNodeBare(b *testing.B) {
	needNode(b)
	for i := 0; i < b.N; i++ {
		if err := exec.Command(hostNode, "-e", "0").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
