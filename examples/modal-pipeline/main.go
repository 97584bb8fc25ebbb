// Command modal-pipeline is the seed README's machine learning pipeline
// on Modal: it lays out a project in a sandbox, writes a training script,
// runs it, and checks that the model was saved.
//
//	export MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=...
//	go run ./examples/modal-pipeline
//	go run ./examples/modal-pipeline -emulate   # offline, on a local Modal emulator
//
// The script trains the seed's PyTorch model where PyTorch is installed
// (the default image has it) and a plain-Python linear model elsewhere
// (the emulator runs this machine's python3).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

const defaultImage = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"

const trainScript = `
import json
import random

try:
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset
except ImportError:
    torch = None

if torch is not None:
    # The seed's model, as it wrote it.
    X = torch.randn(1000, 10)
    y = torch.randn(1000, 1)
    dataloader = DataLoader(TensorDataset(X, y), batch_size=32)

    class SimpleModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(10, 1)

        def forward(self, x):
            return self.linear(x)

    model = SimpleModel()
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(10):
        for batch_x, batch_y in dataloader:
            optimizer.zero_grad()
            loss = criterion(model(batch_x), batch_y)
            loss.backward()
            optimizer.step()
        print(f"Epoch {epoch+1}, Loss: {loss.item():.4f}")
    torch.save(model.state_dict(), "/ml-project/models/model.pt")
else:
    # No PyTorch: the same loop for y = 3x + 2 in plain Python.
    rng = random.Random(1)
    data = [(x, 3 * x + 2 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(1000))]
    w = b = 0.0
    for epoch in range(10):
        for x, t in data:
            err = w * x + b - t
            w -= 0.01 * err * x
            b -= 0.01 * err
        loss = sum((w * x + b - t) ** 2 for x, t in data) / len(data)
        print(f"Epoch {epoch+1}, Loss: {loss:.4f}")
    with open("/ml-project/models/model.pt", "w") as f:
        json.dump({"w": w, "b": b}, f)
print("Model saved!")
`

// runTraining is the seed's runner: the script in a subprocess.
const runTraining = `
import subprocess
import sys

result = subprocess.run([sys.executable, '/ml-project/train.py'], capture_output=True, text=True)
print(result.stdout, end="")
if result.stderr:
    print("Errors:", result.stderr)
sys.exit(result.returncode)
`

func main() {
	image := flag.String("image", defaultImage, "image (with PyTorch, or the script trains a plain-Python model)")
	emulate := flag.Bool("emulate", false, "run on a local Modal emulator (package modaltest) instead of Modal")
	flag.Parse()
	p, done, err := newProvider(*emulate)
	if err == nil {
		defer done()
		err = run(context.Background(), p, *image, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modal-pipeline:", err)
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

func run(ctx context.Context, p *modal.Provider, image string, out io.Writer) error {
	c := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{Image: image})})
	sb, err := c.Create(ctx, &compute.CreateOptions{Timeout: 10 * time.Minute})
	if err != nil {
		return err
	}
	defer sb.Destroy(context.Background())
	fsys := sb.FileSystem()

	// Create the ML project structure.
	for _, dir := range []string{"/ml-project", "/ml-project/data", "/ml-project/models"} {
		if err := fsys.MkdirAll(ctx, dir); err != nil {
			return err
		}
	}
	// Write the training script, and run it.
	if err := fsys.WriteFile(ctx, "/ml-project/train.py", []byte(trainScript)); err != nil {
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

	// Verify that the model was saved.
	saved, err := fsys.Exists(ctx, "/ml-project/models/model.pt")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Model saved:", saved)
	if !saved {
		return fmt.Errorf("no model file")
	}
	list, err := fsys.ReadDir(ctx, "/ml-project/models")
	if err != nil {
		return err
	}
	for _, fi := range list {
		fmt.Fprintf(out, "  %s (%d bytes)\n", fi.Path, fi.Size)
	}
	return sb.Destroy(ctx)
}
