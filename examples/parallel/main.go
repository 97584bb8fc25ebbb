// Command parallel is the seed README's "distributed processing" on the
// local provider: one sandbox per task, all at once, each computing
// statistics over a JSON data file written into it.
//
//	go run ./examples/parallel
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// analyze reads the task's file, named by $TASK_FILE (passed in the
// environment, not spliced into the code), and prints its statistics as
// JSON. pstdev is the population standard deviation, numpy's std.
const analyze = `
import json
import os
import statistics

task = os.environ["TASK_FILE"]
with open(f"data/{task}") as f:
    values = json.load(f)["values"]

print(json.dumps({
    "task": task,
    "mean": statistics.fmean(values),
    "std": statistics.pstdev(values),
    "min": min(values),
    "max": max(values),
    "count": len(values),
}))
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
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "parallel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	p, err := local.New(local.Options{})
	if err != nil {
		return err
	}
	defer p.Close()
	compute.SetConfig(compute.Config{Provider: p})

	tasks := []string{"task1_data.json", "task2_data.json", "task3_data.json"}
	results := make([]taskResult, len(tasks))

	// The first failure cancels the others' context.
	g, ctx := errgroup.WithContext(ctx)
	for i, task := range tasks {
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

// taskValues makes a task's data: 1000 values around a mean that differs
// per task.
func taskValues(seed int) []float64 {
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	values := make([]float64, 1000)
	for i := range values {
		values[i] = 10*float64(seed+1) + rng.NormFloat64()*float64(seed+1)
	}
	return values
}

// process runs one task in a sandbox of its own.
func process(ctx context.Context, task string, seed int) (taskResult, error) {
	sb, err := compute.Create(ctx, nil)
	if err != nil {
		return taskResult{}, err
	}
	defer sb.Destroy(context.Background())

	data, err := json.Marshal(map[string]any{"values": taskValues(seed)})
	if err != nil {
		return taskResult{}, err
	}
	if err := sb.FileSystem().WriteFile(ctx, "data/"+task, data); err != nil {
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
