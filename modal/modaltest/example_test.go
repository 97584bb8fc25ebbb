package modaltest_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"

	modal "github.com/modal-labs/modal-client/go"
	"google.golang.org/grpc/codes"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// exampleClient points Modal's SDK at srv, as setting the variables of
// srv.Env() in a program's environment does.
func exampleClient(srv *modaltest.Server) *modal.Client {
	envMu.Lock() // the tests of this package share the environment
	defer envMu.Unlock()
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}
	client, err := modal.NewClientWithOptions(&modal.ClientParams{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	return client
}

// Run a command in a sandbox through Modal's SDK.
func ExampleNewServer() {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client := exampleClient(srv)
	defer client.Close()

	ctx := context.Background()
	app, err := client.Apps.FromName(ctx, "example", &modal.AppFromNameParams{CreateIfMissing: true})
	if err != nil {
		log.Fatal(err)
	}
	sb, err := client.Sandboxes.Create(ctx, app, client.Images.FromRegistry("python:3.13-slim", nil), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Detach()
	p, err := sb.Exec(ctx, []string{"sh", "-c", "echo hello from $(hostname)"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	out, _ := io.ReadAll(p.Stdout)
	fmt.Print(string(out))
	rec, _ := srv.Sandbox(sb.SandboxID)
	fmt.Println(rec.Image, rec.Status)
	// Output:
	// hello from sandbox
	// python:3.13-slim running
}

// Make the first two sandbox creations fail as if Modal were unavailable;
// the SDK retries until the third succeeds.
func ExampleServer_Inject() {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client := exampleClient(srv)
	defer client.Close()
	srv.Inject("SandboxCreateV2", modaltest.Fault{Code: codes.Unavailable, Times: 2})

	ctx := context.Background()
	app, _ := client.Apps.FromName(ctx, "example", &modal.AppFromNameParams{CreateIfMissing: true})
	sb, err := client.Sandboxes.Create(ctx, app, client.Images.FromRegistry("alpine:3.21", nil), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Detach()
	for _, c := range srv.Calls() {
		if c.Method == "SandboxCreateV2" {
			fmt.Println(c.Method, c.Code)
		}
	}
	// Output:
	// SandboxCreateV2 Unavailable
	// SandboxCreateV2 Unavailable
	// SandboxCreateV2 OK
}
