package modal_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// tsWorker is testdata/tsbench/worker.mjs running: TypeScript
// ComputeSDK's Modal provider (@computesdk/modal on Modal's own JS SDK),
// making one sandbox per request against the same emulator.
type tsWorker struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr strings.Builder
}

// startTSWorker starts the worker, or skips the benchmark saying why it
// cannot (no Node.js, or the npm packages not installed).
func startTSWorker(b testing.TB, srv *modaltest.Server, args ...string) *tsWorker {
	b.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "tsbench"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("no node in PATH: the TypeScript comparison needs Node.js 18 or later")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@computesdk", "modal")); err != nil {
		b.Skipf("@computesdk/modal is not installed: run `npm install` in %s (the comparison skips without it)", dir)
	}
	w := &tsWorker{cmd: exec.Command("node", append([]string{"worker.mjs"}, args...)...)}
	w.cmd.Dir = dir
	w.cmd.Env = append(os.Environ(),
		"MODAL_SERVER_URL="+srv.URL, "MODAL_TOKEN_ID="+srv.TokenID, "MODAL_TOKEN_SECRET="+srv.TokenSecret,
		"MODAL_LOGLEVEL=ERROR")
	w.cmd.Stderr = &w.stderr
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	w.out = bufio.NewScanner(stdout)
	w.out.Buffer(nil, 1<<20)
	if err := w.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		io.WriteString(w.in, "quit\n")
		w.in.Close()
		done := make(chan error, 1)
		go func() { done <- w.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			w.cmd.Process.Kill()
			<-done
		}
	})
	return w
}

// run makes one sandbox and runs its first command; it returns the time
// the worker measured from create to the command's output.
func (w *tsWorker) run(b testing.TB) time.Duration {
	b.Helper()
	if _, err := io.WriteString(w.in, "run\n"); err != nil {
		b.Fatalf("TypeScript worker: %v\n%s", err, w.stderr.String())
	}
	if !w.out.Scan() {
		b.Fatalf("TypeScript worker ended: %v\n%s", w.out.Err(), w.stderr.String())
	}
	var res struct {
		MS     float64 `json:"ms"`
		Stdout string  `json:"stdout"`
		Error  string  `json:"error"`
	}
	if err := json.Unmarshal(w.out.Bytes(), &res); err != nil {
		b.Fatalf("TypeScript worker said %q: %v", w.out.Text(), err)
	}
	if res.Error != "" {
		b.Fatalf("TypeScript worker: %s\n%s", res.Error, w.stderr.String())
	}
	return time.Duration(res.MS * float64(time.Millisecond))
}

// BenchmarkVersusTypeScript compares time to interactive (create + the
// first command's output, on a provider that has made a sandbox before)
// with TypeScript ComputeSDK's Modal provider, side by side on one
// emulator with 20 ms per call, each iteration running every variant in
// turn so that a busy machine slows them alike:
//
//	(cd modal/testdata/tsbench && npm install)
//	go test ./modal -run '^$' -bench VersusTypeScript -benchtime 20x
//
// It reports the median of each variant in ms and its ratio to the
// TypeScript provider with its defaults (ts-ms): "ts-noports" is that
// provider without the daemon port it exposes by default, "go" this
// package with its defaults (a V2 sandbox), "go-prestart" with
// Config.Prestart 1. It skips, saying why, without Node.js or the npm
// packages.
func BenchmarkVersusTypeScript(b *testing.B) {
	srv, goP := benchEmulator(b)
	ts := startTSWorker(b, srv)
	tsNoPorts := startTSWorker(b, srv, "--no-ports")
	poolP, err := modal.New(modal.Config{ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret, Logger: quiet, Prestart: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { poolP.Close() })
	ctx := context.Background()

	goRun := func(c *compute.Compute) func(b testing.TB) time.Duration {
		return func(b testing.TB) time.Duration {
			start := time.Now()
			sb, err := c.Create(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			res, err := sb.RunCommand(ctx, "echo", "ready")
			d := time.Since(start)
			if err != nil || res.Stdout != "ready\n" {
				b.Fatal(res, err)
			}
			if err := sb.Destroy(ctx); err != nil {
				b.Fatal(err)
			}
			return d
		}
	}
	variants := []struct {
		name string
		run  func(b testing.TB) time.Duration
	}{
		{"ts", ts.run},
		{"ts-noports", tsNoPorts.run},
		{"go", goRun(compute.New(compute.Config{Provider: goP}))},
		{"go-prestart", goRun(compute.New(compute.Config{Provider: poolP}))},
	}
	// The first sandbox of each builds the image and finds the app.
	for _, v := range variants {
		v.run(b)
	}
	times := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for range b.N {
		for i, v := range variants {
			times[i] = append(times[i], v.run(b))
		}
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}
	base := median(times[0])
	var summary []string
	for i, v := range variants {
		m := median(times[i])
		b.ReportMetric(m, v.name+"-ms")
		if i > 0 {
			b.ReportMetric(m/base, v.name+"/ts")
		}
		summary = append(summary, fmt.Sprintf("%s %.1f ms (%.2f×)", v.name, m, m/base))
	}
	b.Log("medians: " + strings.Join(summary, ", "))
}
