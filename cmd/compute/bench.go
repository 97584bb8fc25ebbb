package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

type benchFlags struct {
	providers   []string
	isolation   string
	server      string
	n           int
	concurrency int
	stagger     time.Duration
	only        []string
	emulate     bool
	latency     time.Duration
	json        bool
	svg         string
}

// benchModes are the measurements bench can make, in the order it makes
// them, by their --only name, with the rows each one adds to the table.
// The older rows' names are a contract: scripts read them.
var benchModes = []struct {
	name string
	rows []string
}{
	{"cold", []string{rowCold}},
	{"sequential", []string{rowSequential}},
	{"staggered", []string{rowStaggered}},
	{"burst", []string{rowBurst, rowBurstWall}},
	{"exec", []string{rowExec}},
	{"python", []string{rowPython}},
	{"node", []string{rowNode}},
	{"files", []string{rowFiles}},
	{"context", []string{rowContextStart, rowContextCell}},
}

// The rows' names.
const (
	rowCold         = "first create + echo (cold)"
	rowSequential   = "create + echo (time to interactive)"
	rowStaggered    = "staggered create + echo (each)"
	rowBurst        = "burst create + echo (each)"
	rowBurstWall    = "burst create + echo (wall time)"
	rowExec         = "RunCommand /bin/true"
	rowPython       = "RunCode python print(1)"
	rowNode         = "RunCode node console.log(1)"
	rowFiles        = "WriteFile + ReadFile 1 MiB"
	rowContextStart = "NewCodeContext python + cell 1+1"
	rowContextCell  = "code context cell 1+1 (python)"
)

func benchModeNames() []string {
	var names []string
	for _, m := range benchModes {
		names = append(names, m.name)
	}
	return names
}

func (a *app) benchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure providers end to end, side by side: time to interactive, bursts, exec, RunCode, files",
		Long: `Measure what providers cost end to end, through the same API programs
use, side by side in one run: each measurement is repeated -n times, and
each repetition runs on every provider in turn, so that a busy machine
slows them alike and the ratios hold.

The measurements (--only picks some):
  cold        the first create + echo of each provider, on its own
  sequential  create a sandbox and run echo in it (time to interactive)
  staggered   --concurrency creates + echo, one started every --stagger
  burst       --concurrency creates + echo started at once; each one's
              time and the time until all are done (wall time)
  exec        run /bin/true in a live sandbox (exec round trip)
  python      RunCode print(1) in Python
  node        RunCode console.log(1) in Node.js
  files       write and read back 1 MiB
  context     a new Python code context and its first cell 1+1, and a
              cell 1+1 in a live context

The table gives for each row the samples (n), the median (p50), the
90th and 95th percentiles and the mean, in ms; with several providers,
also each median as a ratio of the first provider's. --json prints the
same as JSON, and --svg writes a chart of it.

--emulate measures the modal provider on a Modal emulator started in
this process (as "compute modal emulate"), each RPC delayed by --latency,
its sandboxes on this machine's programs: what the Modal protocol costs
over local sandboxes, offline.`,
		Example: `  compute bench
  compute bench -n 50 --only sequential,exec
  compute bench --provider local,modal --emulate --svg bench.svg
  compute bench --provider local,remote --server http://127.0.0.1:8080
  compute bench --provider modal --only burst --concurrency 50 --json`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			plan, err := a.benchPlan(f, cmd.Flags().Changed("provider"), cmd.Flags().Changed("latency"))
			if err != nil {
				return err
			}
			return a.bench(cmd.Context(), plan)
		}),
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&f.providers, "provider", []string{"local"}, "providers to measure, in this order: local, modal, remote (with --server); a list (local,modal) or the flag again")
	fs.StringVar(&f.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" measures plain host processes`)
	fs.StringVar(&f.server, "server", "", "the remote provider: the compute server at this URL (token in $COMPUTE_TOKEN); alone, it measures that server only")
	fs.IntVarP(&f.n, "n", "n", 10, "repetitions of each measurement (cold, staggered and burst: once per provider)")
	fs.IntVar(&f.concurrency, "concurrency", 10, "sandboxes of one burst, and of the staggered run")
	fs.DurationVar(&f.stagger, "stagger", 200*time.Millisecond, "staggered: the interval between two creates")
	fs.StringSliceVar(&f.only, "only", nil, "measure only these (a list): "+strings.Join(benchModeNames(), ", ")+" (default all)")
	fs.BoolVar(&f.emulate, "emulate", false, "measure the modal provider on a Modal emulator started here, not on Modal's cloud")
	fs.DurationVar(&f.latency, "latency", 20*time.Millisecond, "with --emulate: delay every RPC of the emulator by this much, as a round trip to Modal's cloud")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of the table")
	fs.StringVar(&f.svg, "svg", "", "also write a chart (SVG) to this file: p50 bars, p95 whiskers, one colour per provider")
	return cmd
}

// benchPlan is what one bench run does, validated.
type benchPlan struct {
	providers   []string // in order
	isolation   string
	server      string
	n           int
	concurrency int
	stagger     time.Duration
	modes       map[string]bool
	emulate     bool
	latency     time.Duration
	json        bool
	svg         string
}

// benchPlan checks the flags before anything starts, so that a mistake
// costs nothing.
func (a *app) benchPlan(f *benchFlags, providerSet, latencySet bool) (*benchPlan, error) {
	p := &benchPlan{isolation: f.isolation, server: f.server, n: f.n, concurrency: f.concurrency,
		stagger: f.stagger, emulate: f.emulate, latency: f.latency, json: f.json, svg: f.svg, modes: map[string]bool{}}
	if f.n < 1 {
		return nil, usagef("-n must be at least 1, got %d", f.n)
	}
	if f.concurrency < 1 {
		return nil, usagef("--concurrency must be at least 1, got %d", f.concurrency)
	}
	if f.stagger < 0 {
		return nil, usagef("--stagger must not be negative, got %v", f.stagger)
	}
	if f.latency < 0 {
		return nil, usagef("--latency must not be negative, got %v", f.latency)
	}
	if latencySet && !f.emulate {
		return nil, usagef("--latency is the emulator's: add --emulate")
	}

	names := f.providers
	if f.server != "" && !providerSet {
		names = []string{"remote"} // compute bench --server URL, as before
	}
	known := append(providerNames(a.providers), "remote")
	for _, n := range names {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			return nil, usagef("--provider: an empty name in %q", strings.Join(f.providers, ","))
		case !slices.Contains(known, n):
			return nil, usagef("unknown provider %q (available: %s)", n, strings.Join(known, ", "))
		case slices.Contains(p.providers, n):
			return nil, usagef("--provider names %q twice", n)
		}
		p.providers = append(p.providers, n)
	}
	has := func(n string) bool { return slices.Contains(p.providers, n) }
	if has("remote") && f.server == "" {
		return nil, usagef("the remote provider is a compute server: give its URL with --server")
	}
	if f.server != "" && !has("remote") {
		return nil, usagef("--server is the remote provider's URL: name remote in --provider (such as --provider local,remote)")
	}
	if f.isolation != string(local.IsolationNamespaces) && !has("local") {
		return nil, usagef("--isolation is a flag of the local provider, which --provider does not name")
	}
	if f.emulate && !has("modal") {
		return nil, usagef("--emulate runs the modal provider on an emulator: name modal in --provider (such as --provider local,modal)")
	}

	for _, m := range f.only {
		m = strings.TrimSpace(m)
		if !slices.Contains(benchModeNames(), m) {
			return nil, usagef("--only: unknown measurement %q (want some of %s)", m, strings.Join(benchModeNames(), ", "))
		}
		p.modes[m] = true
	}
	if len(p.modes) == 0 {
		for _, m := range benchModeNames() {
			p.modes[m] = true
		}
	}

	if f.svg != "" {
		dir := filepath.Dir(f.svg)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, usagef("--svg %s: no directory %s to write the chart in", f.svg, dir)
		}
	}
	return p, nil
}

// benchTarget is one provider under measurement.
type benchTarget struct {
	name   string // as --provider names it
	detail string // how it runs, for the reader: "namespaces", "emulator, 20ms per RPC"
	p      provider
	c      *compute.Compute
	// live are the sandboxes that exec, RunCode, files and contexts run
	// in, by runtime (Modal's images differ), created when first needed.
	live map[compute.Runtime]*compute.Sandbox
}

// warm refills a local provider's reserve, so that what is measured is
// the steady state of a program that creates sandboxes now and then.
func (t *benchTarget) warm(ctx context.Context) {
	if lp, ok := t.p.(*local.Provider); ok {
		lp.Warm(ctx)
	}
}

func (t *benchTarget) sandbox(ctx context.Context, rt compute.Runtime) (*compute.Sandbox, error) {
	if sb := t.live[rt]; sb != nil {
		return sb, nil
	}
	sb, err := t.c.Create(ctx, &compute.CreateOptions{Runtime: rt})
	if err != nil {
		return nil, err
	}
	t.live[rt] = sb
	return sb, nil
}

// bencher runs the measurements of a plan and collects their samples.
type bencher struct {
	plan    *benchPlan
	targets []*benchTarget
	results []*benchResult
	// progress, when set, shows which measurement is running (a full
	// run takes a while).
	progress func(string)
}

// benchResult is one row for one provider.
type benchResult struct {
	provider, operation, mode string
	samples                   []time.Duration
}

func (b *bencher) result(t *benchTarget, op, mode string) *benchResult {
	for _, r := range b.results {
		if r.provider == t.name && r.operation == op {
			return r
		}
	}
	r := &benchResult{provider: t.name, operation: op, mode: mode}
	b.results = append(b.results, r)
	return r
}

func (a *app) bench(ctx context.Context, plan *benchPlan) (err error) {
	b := &bencher{plan: plan, progress: progressTo(a.stderr)}
	var srv *modaltest.Server
	defer func() {
		cleanup := context.WithoutCancel(ctx)
		for _, t := range b.targets {
			for _, sb := range t.live {
				sb.Destroy(cleanup)
			}
			if cerr := t.p.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("closing the %s provider: %w", t.name, cerr)
			}
		}
		if srv != nil {
			if cerr := srv.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("stopping the Modal emulator: %w", cerr)
			}
		}
	}()
	for _, name := range plan.providers {
		t := &benchTarget{name: name, live: map[compute.Runtime]*compute.Sandbox{}}
		var p provider
		var err error
		switch {
		case name == "remote":
			p, err = a.newProvider("local", providerOptions{isolation: string(local.IsolationNamespaces), server: plan.server})
			t.detail = plan.server
		case name == "modal" && plan.emulate:
			srv, p, err = a.benchEmulator(plan.latency)
			t.detail = fmt.Sprintf("emulator, %v per RPC", plan.latency)
		case name == "local":
			p, err = a.newProvider(name, providerOptions{isolation: plan.isolation})
			t.detail = plan.isolation
		default:
			p, err = a.newProvider(name, providerOptions{isolation: string(local.IsolationNamespaces)})
		}
		if err != nil {
			return err
		}
		t.p = p
		t.c = compute.New(compute.Config{Provider: p})
		b.targets = append(b.targets, t)
	}
	if err := b.run(ctx); err != nil {
		return err
	}
	if plan.svg != "" {
		if err := writeBenchSVG(plan.svg, b.report()); err != nil {
			return err
		}
	}
	if plan.json {
		return b.report().writeJSON(a.stdout)
	}
	return b.report().writeTable(a.stdout)
}

// benchEmulator starts a Modal emulator and a modal provider for it. Its
// sandboxes run on this machine's programs (no image is pulled), so that
// the difference from the local provider is what Modal's protocol costs.
func (a *app) benchEmulator(latency time.Duration) (*modaltest.Server, provider, error) {
	srv, err := modaltest.NewServer(modaltest.Options{
		Latency:    latency,
		ImageFiles: modaltest.ImageFilesHost,
		Logger:     slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the Modal emulator: %w", err)
	}
	p, err := modal.New(modal.Config{
		ServerURL:   srv.URL,
		TokenID:     srv.TokenID,
		TokenSecret: srv.TokenSecret,
		Logger:      slog.New(&cliLogHandler{w: a.stderr}),
	})
	if err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("starting the modal provider for the emulator: %w", err)
	}
	return srv, p, nil
}

func (b *bencher) run(ctx context.Context) error {
	pl := b.plan
	steps := []struct {
		mode string
		run  func(context.Context) error
	}{
		{"cold", func(ctx context.Context) error {
			return b.repeat(ctx, rowCold, "cold", 1, b.createEcho)
		}},
		{"sequential", func(ctx context.Context) error {
			return b.repeat(ctx, rowSequential, "sequential", pl.n, b.createEcho)
		}},
		{"staggered", func(ctx context.Context) error {
			return b.concurrent(ctx, "staggered", pl.stagger)
		}},
		{"burst", func(ctx context.Context) error {
			return b.concurrent(ctx, "burst", 0)
		}},
		{"exec", func(ctx context.Context) error {
			return b.repeatIn(ctx, rowExec, "exec", compute.Python, func(ctx context.Context, sb *compute.Sandbox) error {
				res, err := sb.RunCommand(ctx, "/bin/true")
				return checkOutput(res, err, "")
			})
		}},
		{"python", func(ctx context.Context) error {
			return b.repeatIn(ctx, rowPython, "runcode", compute.Python, func(ctx context.Context, sb *compute.Sandbox) error {
				res, err := sb.RunCode(ctx, "print(1)", &compute.CodeOptions{Runtime: compute.Python})
				return checkOutput(res, err, "1\n")
			})
		}},
		{"node", func(ctx context.Context) error {
			return b.repeatIn(ctx, rowNode, "runcode", compute.Node, func(ctx context.Context, sb *compute.Sandbox) error {
				res, err := sb.RunCode(ctx, "console.log(1)", &compute.CodeOptions{Runtime: compute.Node})
				return checkOutput(res, err, "1\n")
			})
		}},
		{"files", func(ctx context.Context) error {
			data := make([]byte, 1<<20)
			rand.Read(data)
			return b.repeatIn(ctx, rowFiles, "files", compute.Python, func(ctx context.Context, sb *compute.Sandbox) error {
				fsys := sb.FileSystem()
				if err := fsys.WriteFile(ctx, "bench.bin", data); err != nil {
					return err
				}
				got, err := fsys.ReadFile(ctx, "bench.bin")
				if err == nil && len(got) != len(data) {
					err = fmt.Errorf("read %d bytes back, wrote %d", len(got), len(data))
				}
				return err
			})
		}},
		{"context", b.contexts},
	}
	for _, s := range steps {
		if !pl.modes[s.mode] {
			continue
		}
		if b.progress != nil {
			b.progress("bench: " + s.mode)
		}
		if err := s.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// op is one timed operation on a target; after, when not nil, runs
// untimed once it is over (to destroy what it made), also after an error.
type op func(ctx context.Context, t *benchTarget) (after func(), err error)

// repeat runs op n times on every target: round after round, each round
// on every target in turn, so that a slowdown of the machine hits every
// provider alike.
func (b *bencher) repeat(ctx context.Context, row, mode string, n int, o op) error {
	for range n {
		for _, t := range b.targets {
			r := b.result(t, row, mode)
			t0 := time.Now()
			after, err := o(ctx, t)
			d := time.Since(t0)
			if after != nil {
				after()
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", t.name, row, err)
			}
			r.samples = append(r.samples, d)
		}
	}
	return nil
}

// repeatIn is repeat of f in each target's live sandbox of runtime rt.
func (b *bencher) repeatIn(ctx context.Context, row, mode string, rt compute.Runtime, f func(context.Context, *compute.Sandbox) error) error {
	if err := b.liveSandboxes(ctx, row, rt); err != nil {
		return err
	}
	return b.repeat(ctx, row, mode, b.plan.n, func(ctx context.Context, t *benchTarget) (func(), error) {
		return nil, f(ctx, t.live[rt])
	})
}

// liveSandboxes makes sure every target has its live sandbox of runtime
// rt, untimed.
func (b *bencher) liveSandboxes(ctx context.Context, row string, rt compute.Runtime) error {
	for _, t := range b.targets {
		if _, err := t.sandbox(ctx, rt); err != nil {
			return fmt.Errorf("%s: creating a sandbox for %q: %w", t.name, row, err)
		}
	}
	return nil
}

// createEcho is time to interactive: create a sandbox and run a first
// command in it.
func (b *bencher) createEcho(ctx context.Context, t *benchTarget) (func(), error) {
	sb, err := t.c.Create(ctx, nil)
	if err != nil {
		return nil, err
	}
	after := func() { sb.Destroy(context.WithoutCancel(ctx)); t.warm(ctx) }
	res, err := sb.RunCommand(ctx, "echo", "hi")
	return after, checkOutput(res, err, "hi\n")
}

// concurrent starts --concurrency create + echo on each target in turn,
// one every interval (staggered), or all at once (burst, interval 0), and
// records each one's time to interactive; a burst also records the time
// until the last one is interactive. The sandboxes live until all are
// interactive, as they would in a burst of work.
func (b *bencher) concurrent(ctx context.Context, mode string, interval time.Duration) error {
	row := rowStaggered
	if mode == "burst" {
		row = rowBurst
	}
	for _, t := range b.targets {
		n := b.plan.concurrency
		times := make([]time.Duration, n)
		afters := make([]func(), n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				if interval > 0 {
					select {
					case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
					case <-ctx.Done():
						errs[i] = ctx.Err()
						return
					}
				}
				t0 := time.Now()
				afters[i], errs[i] = b.createEcho(ctx, t)
				times[i] = time.Since(t0)
			})
		}
		wg.Wait()
		wall := time.Since(start)
		var cleanup sync.WaitGroup
		for _, after := range afters {
			if after != nil {
				cleanup.Go(after)
			}
		}
		cleanup.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%s: %s: %w", t.name, row, err)
		}
		r := b.result(t, row, mode)
		r.samples = append(r.samples, times...)
		if mode == "burst" {
			w := b.result(t, rowBurstWall, mode)
			w.samples = append(w.samples, wall)
		}
	}
	return nil
}

// contexts measures a new Python code context with its first cell, and
// cells in a live context.
func (b *bencher) contexts(ctx context.Context) error {
	cell := func(ctx context.Context, cc *compute.CodeContext) error {
		ex, err := cc.Run(ctx, "1+1", nil)
		if err != nil {
			return err
		}
		if ex.Error != nil {
			return fmt.Errorf("the cell raised %s: %s", ex.Error.Name, ex.Error.Value)
		}
		if m := ex.Main(); m == nil || m.Text != "2" {
			return fmt.Errorf("the cell 1+1 gave %+v, want 2", m)
		}
		return nil
	}
	if err := b.liveSandboxes(ctx, rowContextStart, compute.Python); err != nil {
		return err
	}
	err := b.repeat(ctx, rowContextStart, "context", b.plan.n, func(ctx context.Context, t *benchTarget) (func(), error) {
		cc, err := t.live[compute.Python].NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: compute.Python})
		if err != nil {
			return nil, err
		}
		return func() { cc.Close(context.WithoutCancel(ctx)) }, cell(ctx, cc)
	})
	if err != nil {
		return err
	}
	live := map[*benchTarget]*compute.CodeContext{}
	defer func() {
		for _, cc := range live {
			cc.Close(context.WithoutCancel(ctx))
		}
	}()
	for _, t := range b.targets {
		cc, err := t.live[compute.Python].NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: compute.Python})
		if err != nil {
			return fmt.Errorf("%s: %s: %w", t.name, rowContextCell, err)
		}
		live[t] = cc
	}
	return b.repeat(ctx, rowContextCell, "context", b.plan.n, func(ctx context.Context, t *benchTarget) (func(), error) {
		return nil, cell(ctx, live[t])
	})
}

func checkOutput(res *compute.Result, err error, want string) error {
	if err != nil {
		return err
	}
	if res.Stdout != want {
		return fmt.Errorf("got %q, want %q", res.Stdout, want)
	}
	return nil
}
