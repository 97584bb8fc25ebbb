//go:build linux

package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkExecProcess measures the CLI as a user pays for it: the whole
// process (fork+exec of the built binary until it exits), against what
// it stands in for, run in turn with it in every iteration so that the
// ratio holds on a busy machine. Its first row is issue 16's "compute exec
// -- /bin/true whole process vs bwrap ... /bin/true" (goal ≤ 1.5×):
//
//	go test ./cmd/compute -run '^$' -bench ExecProcess -benchtime 30x
//
// Sub-benchmarks, each a pair (the reference is skipped, with the reason,
// where it is not installed):
//
//	exec     compute exec -- /bin/true  vs  bwrap --unshare-all ... /bin/true
//	version  compute version            vs  bwrap ... /bin/true
//	run-c    compute run -c 'print(1)'  vs  /usr/bin/python3 -c 'print(1)'
//	run-file compute run examples/hello.py  vs  /usr/bin/python3 examples/hello.py
//
// Each reports, for both, the median wall time (compute-ms, ref-ms: the
// median is steadier than the mean when other work shares the CPUs) and
// the CPU time (compute-cpu-ms, ref-cpu-ms: user plus system time of the
// process and the children it waited for: the CLI, the sandbox's agent
// and the program), and x-ref: compute-ms over ref-ms. ns/op is the pair.
func BenchmarkExecProcess(b *testing.B) {
	bin := buildCLI(b)
	hello, err := filepath.Abs("../../examples/hello.py")
	if err != nil {
		b.Fatal(err)
	}
	bwrapTrue := bwrapArgv("/bin/true")
	for _, c := range []struct {
		name         string
		compute, ref []string
	}{
		{"exec", []string{bin, "exec", "--", "/bin/true"}, bwrapTrue},
		{"version", []string{bin, "version"}, bwrapTrue},
		{"run-c", []string{bin, "run", "-c", "print(1)"}, []string{"/usr/bin/python3", "-c", "print(1)"}},
		{"run-file", []string{bin, "run", hello}, []string{"/usr/bin/python3", hello}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for _, argv := range [][]string{c.compute, c.ref} {
				if _, err := exec.LookPath(argv[0]); err != nil {
					b.Skipf("%s is not installed (%v); bwrap is in the bubblewrap package of Debian, Ubuntu and Fedora", argv[0], err)
				}
				// Once untimed: it must work here (user namespaces, ...),
				// and the page cache gets the binaries.
				if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
					b.Skipf("%q does not run on this machine: %v\n%s", argv, err, out)
				}
			}
			var compute, ref processTimes
			for b.Loop() {
				compute.run(b, c.compute)
				ref.run(b, c.ref)
			}
			b.ReportMetric(ms(median(compute.wall)), "compute-ms")
			b.ReportMetric(ms(median(ref.wall)), "ref-ms")
			b.ReportMetric(ms(median(compute.cpu)), "compute-cpu-ms")
			b.ReportMetric(ms(median(ref.cpu)), "ref-cpu-ms")
			b.ReportMetric(float64(median(compute.wall))/float64(median(ref.wall)), "x-ref")
		})
	}
}

// processTimes are the wall and CPU times of a command's runs.
type processTimes struct{ wall, cpu []time.Duration }

// run runs argv to its end, failing b if it fails.
func (t *processTimes) run(b *testing.B, argv []string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("%q: %v\n%s", argv, err, out)
	}
	t.wall = append(t.wall, wall)
	t.cpu = append(t.cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bwrapArgv is the bubblewrap command of issue 16 that runs prog with
// every namespace unshared and the host's /usr read-only.
func bwrapArgv(prog string) []string {
	return []string{"bwrap", "--unshare-all", "--die-with-parent",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", prog}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// buildCLI builds this command as a user would (go build, the go on
// PATH), into a directory removed when tb ends.
func buildCLI(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "compute")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("building the CLI (go build, with the go on PATH): %v\n%s", err, out)
	}
	return bin
}
