package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

type benchFlags struct {
	provider  string
	isolation string
	server    string
	n         int
}

func (a *app) benchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a provider end to end: time to interactive, exec, RunCode, files",
		Long: `Measure what a provider costs end to end, through the same API programs
use: create a sandbox and run a first command (time to interactive), run
/bin/true, run print(1) in Python and Node.js, write and read back 1 MiB.
Each is repeated -n times; the table gives the median, the 90th percentile
and the mean. The first create is shown on its own: it starts cold.`,
		Example: `  compute bench
  compute bench -n 50
  compute bench --server http://127.0.0.1:8080`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.n < 1 {
				return usagef("-n must be at least 1")
			}
			return a.bench(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.provider, "provider", "local", "provider to measure")
	fs.StringVar(&f.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" measures plain host processes`)
	fs.StringVar(&f.server, "server", "", "measure the compute server at this URL (token in $COMPUTE_TOKEN)")
	fs.IntVarP(&f.n, "n", "n", 20, "repetitions of each measurement")
	return cmd
}

func (a *app) bench(ctx context.Context, f *benchFlags) error {
	p, err := a.newProvider(f.provider, providerOptions{isolation: f.isolation, server: f.server})
	if err != nil {
		return err
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	warm := func() {
		if lp, ok := p.(*local.Provider); ok {
			lp.Warm(ctx) // measure the steady state: the reserve refilled
		}
	}

	type row struct {
		name    string
		samples []time.Duration
	}
	var rows []row
	// after, when set, runs after each timed op, untimed.
	var after func()
	measure := func(name string, n int, op func() error) error {
		r := row{name: name}
		for range n {
			t0 := time.Now()
			err := op()
			r.samples = append(r.samples, time.Since(t0))
			if after != nil {
				after()
				after = nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		rows = append(rows, r)
		return nil
	}
	check := func(res *compute.Result, err error, want string) error {
		if err != nil {
			return err
		}
		if res.Stdout != want {
			return fmt.Errorf("got %q, want %q", res.Stdout, want)
		}
		return nil
	}
	createEcho := func() error {
		sb, err := c.Create(ctx, nil)
		if err != nil {
			return err
		}
		after = func() { sb.Destroy(context.WithoutCancel(ctx)); warm() }
		res, err := sb.RunCommand(ctx, "echo", "hi")
		return check(res, err, "hi\n")
	}
	if err := measure("first create + echo (cold)", 1, createEcho); err != nil {
		return err
	}
	if err := measure("create + echo (time to interactive)", f.n, createEcho); err != nil {
		return err
	}

	sb, err := c.Create(ctx, nil)
	if err != nil {
		return err
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	data := make([]byte, 1<<20)
	rand.Read(data)
	steps := []struct {
		name string
		op   func() error
	}{
		{"RunCommand /bin/true", func() error {
			res, err := sb.RunCommand(ctx, "/bin/true")
			return check(res, err, "")
		}},
		{"RunCode python print(1)", func() error {
			res, err := sb.RunCode(ctx, "print(1)", &compute.CodeOptions{Runtime: compute.Python})
			return check(res, err, "1\n")
		}},
		{"RunCode node console.log(1)", func() error {
			res, err := sb.RunCode(ctx, "console.log(1)", &compute.CodeOptions{Runtime: compute.Node})
			return check(res, err, "1\n")
		}},
		{"WriteFile + ReadFile 1 MiB", func() error {
			fsys := sb.FileSystem()
			if err := fsys.WriteFile(ctx, "bench.bin", data); err != nil {
				return err
			}
			got, err := fsys.ReadFile(ctx, "bench.bin")
			if err == nil && len(got) != len(data) {
				err = fmt.Errorf("read %d bytes back, wrote %d", len(got), len(data))
			}
			return err
		}},
	}
	for _, s := range steps {
		if err := measure(s.name, f.n, s.op); err != nil {
			return err
		}
	}

	fmt.Fprintf(a.stdout, "provider %s, %d runs each\n\n", p.Name(), f.n)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\tp50\tp90\tmean")
	for _, r := range rows {
		s := slices.Clone(r.samples)
		slices.Sort(s)
		var sum time.Duration
		for _, d := range s {
			sum += d
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, ms(s[len(s)/2]), ms(s[len(s)*9/10]), ms(sum/time.Duration(len(s))))
	}
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
