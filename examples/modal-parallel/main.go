// Command modal-parallel is the seed README's distributed processing on
// Modal: one sandbox per task, all at once, each computing statistics over
// a JSON data file written into it.
//
//	export MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=...
//	go run ./examples/modal-parallel
//	go run ./examples/modal-parallel -tasks 20
//	go run ./examples/modal-parallel -emulate   # offline, on a local Modal emulator
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// analyze is the seed's analysis; numpy's mean and std where numpy is
// installed, the standard library's otherwise (python:3.13-slim has no
// numpy). The task's file comes in $TASK_FILE, not spliced into the code.
const analyze = `
import json
import os

task = os.environ["TASK_FILE"]
with open(f"/data/{task}") as f:
    data = json.load(f)

try:
    import numpy as np
    values = np.array(data["values"])
    mean, std, lo, hi = float(values.mean()), float(values.std()), float(values.min()), float(values.max())
except ImportError:
    import statistics
    values = data["values"]
    mean, std, lo, hi = statistics.fmean(values), statistics.pstdev(values), min(values), max(values)

print(json.dumps({"task": task, "mean": mean, "std": std, "min": lo, "max": hi, "count": len(values)}))
`

type taskResult struct {
	Task  string  `json:"task"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Count int     `json:"count"`
}

func main() {
	n := flag.Int("tasks", 3, "number of tasks, one sandbox each")
	emulate := flag.Bool("emulate", false, "run on a local Modal emulator (package modaltest) instead of Modal")
	flag.Parse()
	p, done, err := newProvider(*emulate)
	if err == nil {
		defer done()
		err = run(context.Background(), p, *n, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modal-parallel:", err)
		os.Exit(1)
	}
}

// newProvider returns a provider for Modal (credentials from the
// environment), or for an emulator started here.
func newProvider(emulate bool) (*modal.Provider, func(), error) {
	if !emulate {
		p, err := modal.New(modal.Config{})
		if err != nil {
			return nil, nil, err
		}
		return p, func() { p.Close() }, nil
	}
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		return nil, nil, err
	}
	p, err := modal.New(modal.Config{ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return p, func() { p.Close(); srv.Close() }, nil
}

func run(ctx context.Context, p *modal.Provider, n int, out io.Writer) error {
	compute.SetConfig(compute.Config{Provider: p})
	// Build the image once, before the sandboxes start together.
	if err := p.Prepare(ctx, nil); err != nil {
		return err
	}
	results := make([]taskResult, n)
	g, ctx := errgroup.WithContext(ctx) // the first failure cancels the others
	for i := range n {
		task := fmt.Sprintf("task%d_data.json", i+1)
		g.Go(func() error {
			r, err := process(ctx, task, i)
			if err != nil {
				return fmt.Errorf("%s: %w", task, err)
			}
			results[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintf(out, "Task %s: mean=%.2f std=%.2f min=%.2f max=%.2f count=%d\n", r.Task, r.Mean, r.Std, r.Min, r.Max, r.Count)
	}
	return nil
}

// process runs one task in a sandbox of its own.
func process(ctx context.Context, task string, seed int) (taskResult, error) {
	sb, err := compute.Create(ctx, nil)
	if err != nil {
		return taskResult{}, err
	}
	defer sb.Destroy(context.Background())

	// The task's data: 1000 values around a mean that differs per task.
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	values := make([]float64, 1000)
	for i := range values {
		values[i] = 10*float64(seed+1) + rng.NormFloat64()*float64(seed+1)
	}
	data, err := json.Marshal(map[string]any{"values": values})
	if err != nil {
		return taskResult{}, err
	}
	if err := sb.FileSystem().WriteFile(ctx, "/data/"+task, data); err != nil {
		return taskResult{}, err
	}

	res, err := sb.RunCode(ctx, analyze, &compute.CodeOptions{
		Runtime: compute.Python,
		Env:     map[string]string{"TASK_FILE": task},
	})
	if err != nil {
		return taskResult{}, err
	}
	if res.ExitCode != 0 {
		return taskResult{}, fmt.Errorf("exit code %d: %s", res.ExitCode, res.Stderr)
	}
	var r taskResult
	if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
		return taskResult{}, fmt.Errorf("parsing %q: %w", res.Stdout, err)
	}
	return r, nil
}
