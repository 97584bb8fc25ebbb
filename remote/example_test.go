package remote_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// The same API as a local provider, over HTTP.
func Example() {
	ctx := context.Background()
	// A server on loopback; usually another machine runs "compute serve".
	p, err := local.New(local.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	rp := remote.New(ts.URL, "") // the server's token, if it has one
	defer rp.Close()
	c := compute.New(compute.Config{Provider: rp})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Destroy(ctx)

	res, err := sb.RunCommand(ctx, "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q %q %d\n", res.Stdout, res.Stderr, res.ExitCode)
	if err := sb.FileSystem().WriteFile(ctx, "notes.txt", []byte("remote bytes")); err != nil {
		fmt.Println(err)
		return
	}
	data, err := sb.FileSystem().ReadFile(ctx, "notes.txt")
	fmt.Println(string(data), err)
	// Output:
	// "hello\n" "oops\n" 3
	// remote bytes <nil>
}
