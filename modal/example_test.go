package modal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// A sandbox on Modal: here on the emulator, so that the example runs
// offline; against Modal, leave ServerURL and the tokens out and set
// MODAL_TOKEN_ID and MODAL_TOKEN_SECRET.
func Example() {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	p, err := modal.New(modal.Config{ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	res, err := sb.RunCode(ctx, `print("Hello from a Modal sandbox!")`, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
	// Output: Hello from a Modal sandbox!
}

// Modal's options for one kind of sandbox: a GPU, more memory, a port.
func ExampleProvider_With() {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	p, err := modal.New(modal.Config{
		ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret,
		Logger: slog.New(slog.DiscardHandler), // the emulator warns that it has no GPU
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()

	gpus := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{
		GPU: "A100", MemoryMiB: 16 << 10, EncryptedPorts: []int{8000},
	})})
	sb, err := gpus.Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	info, _ := sb.Info(ctx)
	fmt.Println(info.Limits[2])
	url, _ := sb.Driver().(*modal.Sandbox).URL(ctx, 8000)
	fmt.Println(url != "")
	// Output:
	// gpu A100
	// true
}

// A program on a terminal in a Modal sandbox, at the size asked for:
// Modal cannot resize it later.
func ExampleSandbox_Terminal() {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	p, err := modal.New(modal.Config{ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Destroy(ctx)

	term, err := sb.Terminal(ctx, &compute.TerminalOptions{
		Argv: []string{"sh", "-c", `read -r name; stty size; echo "hello, $name"; exit 3`},
		Rows: 40, Cols: 120,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer term.Close()
	term.Write([]byte("Modal\r")) // typed: the terminal echoes it
	screen, _ := io.ReadAll(term) // until the program exits
	code, _ := term.Wait()
	fmt.Printf("%q\n", screen)
	fmt.Println("exit", code)
	fmt.Println(errors.Is(term.Resize(50, 132), compute.ErrUnsupported))
	// Output:
	// "Modal\r\n40 120\r\nhello, Modal\r\n"
	// exit 3
	// true
}
