package compute_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

func Example() {
	ctx := context.Background()

	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close() // destroys every sandbox still running

	compute.SetConfig(compute.Config{Provider: p})
	sb, err := compute.Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer compute.Destroy(ctx, sb.ID())

	res, err := sb.RunCode(ctx, `print("Hello from a sandbox")`, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
	// Output: Hello from a sandbox
}

func ExampleSandbox_RunCode() {
	ctx := context.Background()
	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// The runtime is detected from the code when none is named.
	for _, code := range []string{
		`print("Hello from Python!")`,
		`console.log("Hello from Node!")`,
	} {
		res, err := sb.RunCode(ctx, code, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s", res.Runtime, res.Stdout)
	}

	// An error raised while running is a result with a non-zero exit code.
	res, err := sb.RunCode(ctx, `raise Exception("boom")`, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit code", res.ExitCode, strings.Contains(res.Stderr, "Exception: boom"))
	// Output:
	// python: Hello from Python!
	// node: Hello from Node!
	// exit code 1 true
}

func ExampleSandbox_RunCode_syntaxError() {
	ctx := context.Background()
	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// Code the interpreter rejects before running gives a *SyntaxError.
	_, err = sb.RunCode(ctx, "invalid syntax here!!!", &compute.CodeOptions{Runtime: compute.Node})
	var se *compute.SyntaxError
	if errors.As(err, &se) {
		fmt.Println("syntax error in", se.Runtime, "code")
	}
	// Output: syntax error in node code
}

func ExampleSandbox_RunCommand() {
	ctx := context.Background()
	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// Arguments reach the program as they are: no shell sees them.
	res, err := sb.RunCommand(ctx, "printf", "%s|", "a b", "$HOME", "`x`")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Stdout)

	// RunShell is for pipes, redirections and variables.
	res, err = sb.RunShell(ctx, "printf 'b\\na\\n' | sort; exit 3", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
	fmt.Println("exit code", res.ExitCode)
	// Output:
	// a b|$HOME|`x`|
	// a
	// b
	// exit code 3
}

func ExampleSandbox_Command() {
	ctx := context.Background()
	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// Cmd works like os/exec.Cmd.
	cmd := sb.Command("tr", "a-z", "A-Z")
	cmd.Stdin = strings.NewReader("shout\n")
	out, err := cmd.Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))

	err = sb.Command("sh", "-c", "exit 2").Run()
	var ee *compute.ExitError
	if errors.As(err, &ee) {
		fmt.Println("exit code", ee.ExitCode)
	}
	// Output:
	// SHOUT
	// exit code 2
}

func ExampleFileSystem() {
	ctx := context.Background()
	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// Relative paths are in the sandbox's working directory; parents are
	// created as needed.
	files := sb.FileSystem()
	if err := files.WriteFile(ctx, "app/main.py", []byte(`print(open("app/data.txt").read())`)); err != nil {
		log.Fatal(err)
	}
	if err := files.WriteFile(ctx, "app/data.txt", []byte("read by the program")); err != nil {
		log.Fatal(err)
	}
	res, err := sb.RunCommand(ctx, "python3", "app/main.py")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)

	// FS gives an io/fs view, for fs.WalkDir, fs.Glob, template.ParseFS...
	err = fs.WalkDir(files.FS(ctx, "app"), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			fmt.Println(path, d.IsDir())
		}
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// read by the program
	// . true
	// data.txt false
	// main.py false
}

func ExampleSandbox_Terminal() {
	ctx := context.Background()

	p, err := local.New(local.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	// A program on a 30×100 pseudo-terminal: it sees a real tty.
	term, err := sb.Terminal(ctx, &compute.TerminalOptions{
		Argv: []string{"/bin/sh", "-c", "stty size; read -r name; echo \"hello, $name\"; exit 3"},
		Rows: 30, Cols: 100,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer term.Close()
	screen := bufio.NewReader(term)
	size, err := screen.ReadString('\n') // "30 100\r\n": a terminal ends lines with CR LF
	if err != nil {
		log.Fatal(err)
	}
	// Type a line as a person would: the terminal echoes it.
	if _, err := term.Write([]byte("gopher\r")); err != nil {
		log.Fatal(err)
	}
	rest, err := io.ReadAll(screen) // until the program exits
	if err != nil {
		log.Fatal(err)
	}
	code, err := term.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.ReplaceAll(size+string(rest), "\r\n", "\n"))
	fmt.Println("exit code", code)
	// Output:
	// 30 100
	// gopher
	// hello, gopher
	// exit code 3
}
