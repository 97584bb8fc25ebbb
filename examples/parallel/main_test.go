package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// The example runs, whole, on the local provider, and prints for every
// task the statistics of its data, computed in the sandbox by Python: the
// test computes them again here, from the same data.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var want strings.Builder
	for i, task := range []string{"task1_data.json", "task2_data.json", "task3_data.json"} {
		values := taskValues(i)
		var sum float64
		for _, v := range values {
			sum += v
		}
		mean := sum / float64(len(values))
		var sq float64
		for _, v := range values {
			sq += (v - mean) * (v - mean)
		}
		std := math.Sqrt(sq / float64(len(values)))
		fmt.Fprintf(&want, "Task %s: mean=%.2f std=%.2f min=%.2f max=%.2f count=%d\n", task, mean, std, slices.Min(values), slices.Max(values), len(values))
	}
	if out.String() != want.String() {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want.String())
	}
}
