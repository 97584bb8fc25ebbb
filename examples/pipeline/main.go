// Command pipeline is the seed README's "machine learning pipeline with
// files" on the local provider, with only what the system's Python has (no
// torch, no numpy): it lays out a project in a sandbox, writes a data set
// and a training script into it, trains a linear model with stochastic
// gradient descent by running the script from RunCode, and reads the saved
// model back.
//
//	go run ./examples/pipeline
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// trainScript fits y = w*x + b by SGD on the CSV data set, compares the
// result with statistics.linear_regression's closed form, and saves the
// model as JSON.
const trainScript = `
import csv
import json
import random
import statistics

with open("ml-project/data/train.csv", newline="") as f:
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
print(f"Loaded {len(rows)} samples")

def mse(w, b):
    return statistics.fmean((w * x + b - y) ** 2 for x, y in rows)

rng = random.Random(1)
w, b, lr = 0.0, 0.0, 0.005
for epoch in range(10):
    rng.shuffle(rows)
    for x, y in rows:
        err = w * x + b - y
        w -= lr * err * x
        b -= lr * err
    print(f"Epoch {epoch + 1}, Loss: {mse(w, b):.4f}")

exact = statistics.linear_regression([x for x, _ in rows], [y for _, y in rows])
print(f"SGD:          w={w:.3f} b={b:.3f}")
print(f"Closed form:  w={exact.slope:.3f} b={exact.intercept:.3f}")

with open("ml-project/models/model.json", "w") as f:
    json.dump({"w": w, "b": b, "loss": mse(w, b)}, f)
print("Model saved!")
`

// runTraining runs train.py in a subprocess, as the seed does.
const runTraining = `
import subprocess
import sys

result = subprocess.run([sys.executable, "ml-project/train.py"], capture_output=True, text=True)
print(result.stdout, end="")
if result.stderr:
    print("Errors:", result.stderr)
sys.exit(result.returncode)
`

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
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

	sb, err := compute.Create(ctx, nil)
	if err != nil {
		return err
	}
	defer sb.Destroy(context.Background())
	fsys := sb.FileSystem()

	// Create the project structure.
	for _, dir := range []string{"ml-project", "ml-project/data", "ml-project/models"} {
		if err := fsys.MkdirAll(ctx, dir); err != nil {
			return err
		}
	}

	// Write a data set: y = 3x + 2 plus noise.
	rng := rand.New(rand.NewPCG(1, 2))
	var csv strings.Builder
	csv.WriteString("x,y\n")
	for range 200 {
		x := rng.Float64()*2 - 1
		fmt.Fprintf(&csv, "%.6f,%.6f\n", x, 3*x+2+rng.NormFloat64()*0.1)
	}
	if err := fsys.WriteFile(ctx, "ml-project/data/train.csv", []byte(csv.String())); err != nil {
		return err
	}

	// Write the training script and run it.
	if err := fsys.WriteFile(ctx, "ml-project/train.py", []byte(trainScript)); err != nil {
		return err
	}
	res, err := sb.RunCode(ctx, runTraining, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)
	if res.ExitCode != 0 {
		return fmt.Errorf("training failed with exit code %d: %s", res.ExitCode, res.Stderr)
	}

	// Verify that the model was saved, and read it back.
	saved, err := fsys.Exists(ctx, "ml-project/models/model.json")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Model saved:", saved)
	if !saved {
		return fmt.Errorf("no model file")
	}
	data, err := fsys.ReadFile(ctx, "ml-project/models/model.json")
	if err != nil {
		return err
	}
	var model struct{ W, B, Loss float64 }
	if err := json.Unmarshal(data, &model); err != nil {
		return fmt.Errorf("model.json: %w", err)
	}
	fmt.Fprintf(out, "Model: y = %.2fx + %.2f (loss %.4f)\n", model.W, model.B, model.Loss)
	if model.W < 2.8 || model.W > 3.2 || model.B < 1.8 || model.B > 2.2 {
		return fmt.Errorf("the model did not learn y = 3x + 2")
	}
	return sb.Destroy(ctx)
}
