package modal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// The benchmarks run against the emulator with 20 ms of latency on every
// call, as a round trip to Modal's cloud might take, so that what they
// measure is mostly round trips:
//
//	go test ./modal -run '^$' -bench . -benchtime 20x
//
// Each reports the calls one operation makes (rpcs/op) beside its time.

const benchLatency = 20 * time.Millisecond

func benchEmulator(b *testing.B) (*modaltest.Server, *modal.Provider) {
	return emulator(b, modaltest.Options{Latency: benchLatency}, modal.Config{})
}

func reportRPCs(b *testing.B, srv *modaltest.Server) {
	b.ReportMetric(float64(srv.CallCount(""))/float64(b.N), "rpcs/op")
}

// Time to interactive: from nothing to the first command's output, on a
// fresh provider (app lookup and image build included) each time.
func BenchmarkTimeToInteractiveCold(b *testing.B) {
	srv, _ := benchEmulator(b)
	ctx := context.Background()
	srv.ResetCalls()
	calls := 0
	b.ResetTimer()
	for range b.N {
		_, p := emulatorClient(b, srv)
		sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if res, err := sb.RunCommand(ctx, "echo", "ready"); err != nil || res.Stdout != "ready\n" {
			b.Fatal(res, err)
		}
		b.StopTimer()
		calls += srv.CallCount("")
		sb.Destroy(ctx)
		p.Close()
		srv.ResetCalls()
		b.StartTimer()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "rpcs/op")
}

// Time to interactive with a provider that has made a sandbox before
// (app and image cached): what every sandbox after the first costs. With
// V2-prestart (Config.Prestart 1) the sandbox comes from the pool, which
// is refilled between iterations (timer stopped); its rpcs/op also count
// the calls the pool makes meanwhile in the background (the new tags of
// the sandbox handed out, the refill's create, its watcher's wait).
func BenchmarkTimeToInteractiveWarm(b *testing.B) {
	for _, v := range []struct {
		name     string
		gpu      string
		prestart int
	}{{"V2", "", 0}, {"V1-GPU", "T4", 0}, {"V2-prestart", "", 1}} {
		b.Run(v.name, func(b *testing.B) {
			srv, p := emulator(b, modaltest.Options{Latency: benchLatency}, modal.Config{Prestart: v.prestart})
			ctx := context.Background()
			if err := p.Prepare(ctx, nil); err != nil {
				b.Fatal(err)
			}
			c := compute.New(compute.Config{Provider: p})
			if v.gpu != "" {
				c = compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{GPU: v.gpu})})
			}
			waitPool := func() {
				deadline := time.Now().Add(time.Minute)
				for v.prestart > 0 && len(modal.PooledIDs(p)) < v.prestart {
					if time.Now().After(deadline) {
						b.Fatal("the pool was not refilled within a minute")
					}
					time.Sleep(time.Millisecond)
				}
			}
			waitPool()
			var calls int
			b.ResetTimer()
			for range b.N {
				srv.ResetCalls()
				sb, err := c.Create(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res, err := sb.RunCommand(ctx, "echo", "ready"); err != nil || res.Stdout != "ready\n" {
					b.Fatal(res, err)
				}
				calls += srv.CallCount("")
				b.StopTimer()
				sb.Destroy(ctx)
				waitPool()
				b.StartTimer()
			}
			b.ReportMetric(float64(calls)/float64(b.N), "rpcs/op")
		})
	}
}

// Round trips of the operations on a running sandbox.
func BenchmarkOps(b *testing.B) {
	srv, p := benchEmulator(b)
	ctx := context.Background()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(ctx)
	if _, err := sb.RunCommand(ctx, "true"); err != nil {
		b.Fatal(err)
	}
	cc, err := sb.NewCodeContext(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close(ctx)
	data := make([]byte, 64<<10)
	if err := sb.FileSystem().WriteFile(ctx, "/tmp/bench.bin", data); err != nil {
		b.Fatal(err)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"RunCommand", func() error {
			res, err := sb.RunCommand(ctx, "echo", "hi")
			if err == nil && res.Stdout != "hi\n" {
				err = fmt.Errorf("stdout %q", res.Stdout)
			}
			return err
		}},
		{"RunCode", func() error {
			_, err := sb.RunCode(ctx, "print(1)", nil)
			return err
		}},
		{"WriteFile64KiB", func() error { return sb.FileSystem().WriteFile(ctx, "/tmp/bench.bin", data) }},
		{"ReadFile64KiB", func() error {
			_, err := sb.FileSystem().ReadFile(ctx, "/tmp/bench.bin")
			return err
		}},
		{"Info", func() error {
			_, err := sb.Info(ctx)
			return err
		}},
		{"CodeContextCell", func() error {
			ex, err := cc.Run(ctx, "1 + 1", nil)
			if err == nil && (ex.Main() == nil || ex.Main().Text != "2") {
				err = fmt.Errorf("1 + 1 gave %+v", ex)
			}
			return err
		}},
	} {
		b.Run(op.name, func(b *testing.B) {
			srv.ResetCalls()
			for range b.N {
				if err := op.do(); err != nil {
					b.Fatal(err)
				}
			}
			reportRPCs(b, srv)
		})
	}
}

// A terminal: the time from Terminal to its first output (one PTY exec),
// and a keystroke's round trip (Write to the terminal's echo on Read).
func BenchmarkTerminal(b *testing.B) {
	srv, p := benchEmulator(b)
	ctx := context.Background()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(ctx)
	b.Run("Start", func(b *testing.B) {
		srv.ResetCalls()
		buf := make([]byte, 64)
		for range b.N {
			term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"echo", "ready"}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := term.Read(buf); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if code, err := term.Wait(); code != 0 || err != nil {
				b.Fatal(code, err)
			}
			term.Close()
			b.StartTimer()
		}
		reportRPCs(b, srv)
	})
	b.Run("Keystroke", func(b *testing.B) {
		term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"cat"}})
		if err != nil {
			b.Fatal(err)
		}
		defer term.Close()
		buf := make([]byte, 64)
		srv.ResetCalls()
		b.ResetTimer()
		for range b.N {
			if _, err := term.Write([]byte("x")); err != nil {
				b.Fatal(err)
			}
			if n, err := term.Read(buf); n != 1 || err != nil {
				b.Fatalf("read %q, %v; want the echo of x", buf[:n], err)
			}
		}
		reportRPCs(b, srv)
	})
}
