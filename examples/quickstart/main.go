// Command quickstart is the seed README's first example on the local
// provider: configure, create a sandbox, run code and commands in it, use
// its filesystem, destroy it.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	// The local provider runs sandboxes on this machine. Close destroys
	// any sandbox still running.
	p, err := local.New(local.Options{})
	if err != nil {
		return err
	}
	defer p.Close()

	// Set it as the default provider (the seed's compute.setConfig).
	compute.SetConfig(compute.Config{Provider: p})

	sb, err := compute.Create(ctx, nil)
	if err != nil {
		return err
	}
	defer compute.Destroy(context.Background(), sb.ID())
	fmt.Fprintf(out, "sandbox %s on %s\n", sb.ID(), sb.Provider())

	// Run Python code. The runtime is detected from the code: this is
	// Python. A non-zero exit is in res.ExitCode, not an error.
	res, err := sb.RunCode(ctx, `
import platform
import statistics

data = [2.5, 3.1, 4.7, 5.0, 6.2]
print(f"Python {platform.python_version()}")
print(f"mean={statistics.mean(data):.2f} stdev={statistics.stdev(data):.2f}")
`, nil)
	if err := check("RunCode", res, err); err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)

	// And Node.js, detected from console.log, const and =>.
	res, err = sb.RunCode(ctx, `const xs = [1, 2, 3]; console.log("Node.js", process.version, xs.map(x => x * x))`, nil)
	if err := check("RunCode", res, err); err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)

	// Run a command: a program and its arguments, no shell.
	res, err = sb.RunCommand(ctx, "uname", "-s", "-m")
	if err := check("RunCommand", res, err); err != nil {
		return err
	}
	fmt.Fprint(out, "uname: ", res.Stdout)

	// The filesystem: paths are the sandbox's own, relative ones are in its
	// working directory.
	fsys := sb.FileSystem()
	if err := fsys.MkdirAll(ctx, "app/data"); err != nil {
		return err
	}
	script := "import sys\nprint('hello from', sys.argv[0])\n"
	if err := fsys.WriteFile(ctx, "app/main.py", []byte(script)); err != nil {
		return err
	}
	content, err := fsys.ReadFile(ctx, "app/main.py")
	if err != nil {
		return err
	}
	if string(content) != script {
		return fmt.Errorf("read back %q, wrote %q", content, script)
	}
	entries, err := fsys.ReadDir(ctx, "app")
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir {
			names = append(names, e.Name+"/")
		} else {
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name, e.Size))
		}
	}
	fmt.Fprintln(out, "app/:", strings.Join(names, ", "))

	res, err = sb.RunCommand(ctx, "python3", "app/main.py")
	if err := check("RunCommand", res, err); err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)

	if err := fsys.RemoveAll(ctx, "app/main.py"); err != nil {
		return err
	}
	exists, err := fsys.Exists(ctx, "app/main.py")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "app/main.py exists after Remove:", exists)

	info, err := sb.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "info: id=%s provider=%s status=%s\n", info.ID, info.Provider, info.Status)

	// Destroy now (the deferred Destroy is then a no-op).
	return compute.Destroy(ctx, sb.ID())
}

// check turns a failed or non-zero run into an error that shows stderr.
func check(what string, res *compute.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: exit code %d: %s", what, res.ExitCode, res.Stderr)
	}
	return nil
}
