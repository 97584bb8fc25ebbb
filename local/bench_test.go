//go:build linux

package local_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/creack/pty"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Each benchmark has a "sandbox" and a "host" variant doing the same work,
// the host one with plain os/exec and os files, so the sandbox's overhead
// reads as a ratio:
//
//	go test ./local -run '^$' -bench . -benchtime 200x

var cleanEnv = []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"}

func benchProvider(b *testing.B, opts local.Options) *compute.Compute {
	p, err := local.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return compute.New(compute.Config{Provider: p})
}

func benchSandbox(b *testing.B) *compute.Sandbox {
	sb, err := benchProvider(b, local.Options{}).Create(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return sb
}

func hostRun(b *testing.B, argv ...string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatal(err, out.String())
	}
}

// Time to interactive: create a sandbox and get the output of a first
// echo (destroy excluded). "sandbox" uses the provider's default reserve
// of one prestarted sandbox (refilled between iterations, while destroy
// runs untimed); "sandbox-cold" starts every sandbox from nothing.
func BenchmarkTimeToInteractive(b *testing.B) {
	ctx := context.Background()
	tti := func(b *testing.B, opts local.Options) {
		c := benchProvider(b, opts)
		for b.Loop() {
			sb, err := c.Create(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
				b.Fatal(res, err)
			}
			b.StopTimer()
			sb.Destroy(ctx)
			waitSpare(c)
			b.StartTimer()
		}
	}
	b.Run("sandbox", func(b *testing.B) { tti(b, local.Options{}) })
	b.Run("sandbox-cold", func(b *testing.B) { tti(b, local.Options{Prestart: -1}) })
	b.Run("host", func(b *testing.B) {
		for b.Loop() {
			hostRun(b, "/bin/echo", "hi")
		}
	})
}

// waitSpare waits, untimed, until the provider's reserve is refilled, so
// each iteration measures the same thing.
func waitSpare(c *compute.Compute) {
	c.Providers()[0].(*local.Provider).Warm(context.Background())
}

// Exec round trip of `true` in a running sandbox.
func BenchmarkExecTrue(b *testing.B) {
	ctx := context.Background()
	b.Run("sandbox", func(b *testing.B) {
		sb := benchSandbox(b)
		for b.Loop() {
			if res, err := sb.RunCommand(ctx, "/bin/true"); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("host", func(b *testing.B) {
		for b.Loop() {
			hostRun(b, "/bin/true")
		}
	})
}

// RunCode python `print(1)`.
func BenchmarkRunCodePython(b *testing.B) {
	ctx := context.Background()
	b.Run("sandbox", func(b *testing.B) {
		sb := benchSandbox(b)
		opts := &compute.CodeOptions{Runtime: compute.Python}
		for b.Loop() {
			if res, err := sb.RunCode(ctx, "print(1)", opts); err != nil || res.Stdout != "1\n" {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("host", func(b *testing.B) {
		for b.Loop() {
			hostRun(b, "/usr/bin/python3", "-c", "print(1)")
		}
	})
}

// WriteFile then ReadFile of 1 MiB.
func BenchmarkFileRoundTrip1MiB(b *testing.B) {
	ctx := context.Background()
	data := make([]byte, 1<<20)
	rand.Read(data)
	b.Run("sandbox", func(b *testing.B) {
		fsys := benchSandbox(b).FileSystem()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := fsys.WriteFile(ctx, "f.bin", data); err != nil {
				b.Fatal(err)
			}
			got, err := fsys.ReadFile(ctx, "f.bin")
			if err != nil || len(got) != len(data) {
				b.Fatal(len(got), err)
			}
		}
	})
	b.Run("host", func(b *testing.B) {
		name := filepath.Join(b.TempDir(), "f.bin")
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := os.WriteFile(name, data, 0o644); err != nil {
				b.Fatal(err)
			}
			got, err := os.ReadFile(name)
			if err != nil || len(got) != len(data) {
				b.Fatal(len(got), err)
			}
		}
	})
}

// The cost of the kernel confinement (seccomp, Landlock, dropped
// capabilities) and cgroup limits over bare namespaces: cold time to
// interactive and exec round trip, hardened and not.
func BenchmarkHardening(b *testing.B) {
	ctx := context.Background()
	for _, hardened := range []bool{true, false} {
		name := "hardened"
		if !hardened {
			name = "namespaces-only"
		}
		b.Run(name, func(b *testing.B) {
			local.SetHardening(hardened)
			defer local.SetHardening(true)
			b.Run("tti-cold", func(b *testing.B) {
				c := benchProvider(b, local.Options{Prestart: -1})
				for b.Loop() {
					sb, err := c.Create(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
						b.Fatal(res, err)
					}
					b.StopTimer()
					sb.Destroy(ctx)
					b.StartTimer()
				}
			})
			b.Run("exec", func(b *testing.B) {
				sb, err := benchProvider(b, local.Options{Prestart: -1}).Create(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if res, err := sb.RunCommand(ctx, "/bin/true"); err != nil || res.ExitCode != 0 {
						b.Fatal(res, err)
					}
				}
			})
		})
	}
}

// Code contexts. "cell" is a warm cell 1 + 1 in a live context; compare
// with internal/interpreter's BenchmarkPythonCell, the same cell with the
// interpreter program run directly on the host, to read the sandbox's
// share. "start" creates a context (IPython imported, ready for cells);
// "host-import-ipython" is `python3 -c "import IPython"` on the host, the
// floor any IPython-based context pays.
func BenchmarkCodeContext(b *testing.B) {
	ctx := context.Background()
	sb := benchSandbox(b)
	for _, rt := range []compute.Runtime{compute.Python, compute.Node} {
		b.Run(string(rt)+"/cell", func(b *testing.B) {
			cc, err := sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: rt})
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close(ctx)
			b.ResetTimer()
			for range b.N {
				ex, err := cc.Run(ctx, "1 + 1", nil)
				if err != nil || ex.Main() == nil || ex.Main().Text != "2" {
					b.Fatal(ex, err)
				}
			}
		})
		b.Run(string(rt)+"/start", func(b *testing.B) {
			for range b.N {
				cc, err := sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: rt})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cc.Close(ctx)
				b.StartTimer()
			}
		})
	}
	b.Run("host-import-ipython", func(b *testing.B) {
		for range b.N {
			hostRun(b, "/usr/bin/python3", "-c", "import IPython")
		}
	})
	b.Run("host-node", func(b *testing.B) {
		for range b.N {
			hostRun(b, "/usr/bin/node", "-e", "0")
		}
	})
}

// A terminal on a warm sandbox: open it, read the first output of a
// program (echo), wait for its exit and hang up; beside BenchmarkExecTrue.
// "host" does the same with a pty of the host's (github.com/creack/pty).
func BenchmarkTerminal(b *testing.B) {
	ctx := context.Background()
	readHi := func(b *testing.B, r io.Reader) {
		buf := make([]byte, 64)
		var got []byte
		for !bytes.Contains(got, []byte("hi")) {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				b.Fatalf("read %q: %v", got, err)
			}
		}
	}
	b.Run("sandbox", func(b *testing.B) {
		sb := benchSandbox(b)
		opts := &compute.TerminalOptions{Argv: []string{"/bin/echo", "hi"}}
		for b.Loop() {
			term, err := sb.Terminal(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			readHi(b, term)
			if code, err := term.Wait(); code != 0 || err != nil {
				b.Fatal(code, err)
			}
			if err := term.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("host", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command("/bin/echo", "hi")
			cmd.Env = cleanEnv
			f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
			if err != nil {
				b.Fatal(err)
			}
			readHi(b, f)
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// Create and first command with a cached image root against the same
// with the host's system as root, side by side (issue 15's goal: at most
// 1.3 times). "-cold" variants start every sandbox from nothing; "host
// root" with the default reserve is the prestarted sandbox a Create
// without an image gets, "image" one from the reserve with the last
// image's root, and "image-bare" (two images in turn, so the last image's
// reserve never fits) one from the reserve of sandboxes without a root.
// The image is busybox with the host's python3 (three layers), already in
// the store.
func BenchmarkCreateImage(b *testing.B) {
	ctx := context.Background()
	img := newPythonImage(b)
	other := writeImage(b, filepath.Join(b.TempDir(), "layout"), v1.Config{}, busyboxLayer(b))
	if _, err := img.store.Pull(ctx, other, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { img.store.Remove(context.Background(), other) })
	run := func(b *testing.B, opts local.Options, images ...string) {
		opts.ImageStore = img.store
		c := benchProvider(b, opts)
		i := 0
		for b.Loop() {
			i++
			sb, err := c.Create(ctx, &compute.CreateOptions{Image: images[i%len(images)]})
			if err != nil {
				b.Fatal(err)
			}
			if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
				b.Fatal(res, err)
			}
			b.StopTimer()
			sb.Destroy(ctx)
			if opts.Prestart >= 0 {
				waitSpare(c)
			}
			b.StartTimer()
		}
	}
	b.Run("host-root-cold", func(b *testing.B) { run(b, local.Options{Prestart: -1}, "") })
	b.Run("image-cold", func(b *testing.B) { run(b, local.Options{Prestart: -1}, img.ref) })
	b.Run("host-root", func(b *testing.B) { run(b, local.Options{}, "") })
	b.Run("image", func(b *testing.B) { run(b, local.Options{}, img.ref) })
	b.Run("image-bare", func(b *testing.B) { run(b, local.Options{}, img.ref, other) })
}
