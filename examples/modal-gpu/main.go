// Command modal-gpu is the seed README's GPU example on Modal: a sandbox
// with a GPU and PyTorch checks CUDA and multiplies a matrix on the GPU.
//
//	export MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=...
//	go run ./examples/modal-gpu                 # a T4
//	go run ./examples/modal-gpu -gpu A100
//	go run ./examples/modal-gpu -emulate        # offline, on a local Modal emulator
//
// The first run builds the PyTorch image on Modal (a few minutes); later
// runs start in seconds. Against the emulator the sandbox runs this
// machine's python3, usually without PyTorch or a GPU, and says so.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// defaultImage has PyTorch with CUDA.
const defaultImage = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"

// gpuCheck is the seed's code, made to say what is missing instead of
// failing where PyTorch is not installed.
const gpuCheck = `
import shutil
import subprocess

try:
    import torch
except ImportError:
    torch = None

if torch is None:
    print("CUDA available: False (PyTorch is not installed in this image)")
    if shutil.which("nvidia-smi"):
        print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
else:
    print(f"CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        print(f"GPU device: {torch.cuda.get_device_name()}")

    x = torch.randn(1000, 1000)
    if torch.cuda.is_available():
        x = x.cuda()
    y = torch.matmul(x, x.T)
    print(f"Result shape: {tuple(y.shape)}")
    print(f"Mean: {y.mean().item():.4f}")
`

func main() {
	gpu := flag.String("gpu", "T4", `GPU type and count, as Modal writes them ("T4", "A100", "H100:2")`)
	image := flag.String("image", defaultImage, "image with PyTorch")
	emulate := flag.Bool("emulate", false, "run on a local Modal emulator (package modaltest) instead of Modal")
	flag.Parse()
	p, done, err := newProvider(*emulate)
	if err == nil {
		defer done()
		err = run(context.Background(), p, *gpu, *image, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modal-gpu:", err)
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

func run(ctx context.Context, p *modal.Provider, gpu, image string, out io.Writer) error {
	c := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{GPU: gpu, Image: image})})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		return err
	}
	defer sb.Destroy(context.Background())

	info, err := sb.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Sandbox %s (%s)\n", sb.ID(), strings.Join(info.Limits, "; "))

	res, err := sb.RunCode(ctx, gpuCheck, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)
	if res.ExitCode != 0 {
		return fmt.Errorf("exit code %d: %s", res.ExitCode, res.Stderr)
	}
	return sb.Destroy(ctx)
}
