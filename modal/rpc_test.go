package modal_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// rpcs counts the calls the server received since the last ResetCalls,
// by method, and resets.
func rpcs(srv *modaltest.Server) map[string]int {
	out := map[string]int{}
	for _, c := range srv.Calls() {
		out[c.Method]++
	}
	srv.ResetCalls()
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func describeRPCs(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s := k
		if m[k] > 1 {
			s += fmt.Sprintf(" ×%d", m[k])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// rpcStep is one row of the RPC table: an operation and the calls it may
// make to Modal at most.
type rpcStep struct {
	name string
	max  map[string]int
	do   func(ctx context.Context) error
}

// TestRPCCounts counts the round trips of each operation against the
// emulator's log, and fails if one makes a call it should not (an extra
// image build, app lookup, router handshake, ...). The table it logs is
// the one in the README.
func TestRPCCounts(t *testing.T) {
	for _, gpu := range []string{"", "T4"} {
		t.Run("GPU="+gpu, func(t *testing.T) {
			t.Parallel()
			srv, p := emulator(t, modaltest.Options{}, modal.Config{})
			ctx := testContext(t)
			c := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{GPU: gpu})})
			var sb, sb2 *compute.Sandbox
			createV2 := map[string]int{"AuthTokenGet": 1, "AppGetOrCreate": 1, "EnvironmentGetOrCreate": 1, "ImageGetOrCreate": 1, "SandboxCreateV2": 1}
			secondV2 := map[string]int{"SandboxCreateV2": 1}
			firstExec := map[string]int{"TaskExecStart": 1, "TaskExecStdioRead": 2, "TaskExecWait": 1}
			if gpu != "" {
				// V1: env becomes an ephemeral secret, the create is
				// polled for its task, the router access is asked for.
				createV1 := map[string]int{"SandboxCreate": 1, "SandboxGetTaskId": 1}
				if raceEnabled {
					createV1["SecretGetOrCreate"] = 1 // for the sandbox's env (GORACE, see emulator)
				}
				createV2 = map[string]int{"AuthTokenGet": 1, "AppGetOrCreate": 1, "EnvironmentGetOrCreate": 1, "ImageGetOrCreate": 1}
				maps.Copy(createV2, createV1)
				secondV2 = createV1
				firstExec = map[string]int{"TaskGetCommandRouterAccess": 1, "TaskExecStart": 1, "TaskExecStdioRead": 2, "TaskExecWait": 1}
			}
			exec := map[string]int{"TaskExecStart": 1, "TaskExecStdioRead": 2, "TaskExecWait": 1}
			steps := []rpcStep{
				{"Create (first of a provider)", createV2, func(ctx context.Context) (err error) {
					sb, err = c.Create(ctx, nil)
					return err
				}},
				{"Create (next ones)", secondV2, func(ctx context.Context) (err error) {
					sb2, err = c.Create(ctx, nil)
					return err
				}},
				{"first RunCommand", firstExec, func(ctx context.Context) error {
					_, err := sb.RunCommand(ctx, "true")
					return err
				}},
				{"RunCommand", exec, func(ctx context.Context) error {
					res, err := sb.RunCommand(ctx, "echo", "hi")
					if err == nil && res.Stdout != "hi\n" {
						err = fmt.Errorf("stdout %q", res.Stdout)
					}
					return err
				}},
				{"RunCommand with stdin", map[string]int{"TaskExecStart": 1, "TaskExecStdioRead": 2, "TaskExecWait": 1, "TaskExecStdinWrite": 2}, func(ctx context.Context) error {
					res, err := sb.Run(ctx, []string{"cat"}, &compute.RunOptions{Stdin: strings.NewReader("in")})
					if err == nil && res.Stdout != "in" {
						err = fmt.Errorf("stdout %q", res.Stdout)
					}
					return err
				}},
				{"RunCode", exec, func(ctx context.Context) error {
					res, err := sb.RunCode(ctx, `print(6 * 7)`, nil)
					if err == nil && res.Stdout != "42\n" {
						err = fmt.Errorf("stdout %q", res.Stdout)
					}
					return err
				}},
				{"WriteFile", map[string]int{"TaskExecStart": 1, "TaskExecWait": 1, "TaskExecStdinWriteStream": 1}, func(ctx context.Context) error {
					return sb.FileSystem().WriteFile(ctx, "/tmp/rpc.txt", []byte("data"))
				}},
				{"ReadFile", map[string]int{"TaskExecStart": 1, "TaskExecWait": 1, "TaskExecStdioRead": 1}, func(ctx context.Context) error {
					b, err := sb.FileSystem().ReadFile(ctx, "/tmp/rpc.txt")
					if err == nil && string(b) != "data" {
						err = fmt.Errorf("read %q", b)
					}
					return err
				}},
				{"Stat", map[string]int{"TaskExecStart": 1, "TaskExecWait": 1, "TaskExecStdioRead": 1}, func(ctx context.Context) error {
					_, err := sb.FileSystem().Stat(ctx, "/tmp/rpc.txt")
					return err
				}},
				{"Info", map[string]int{"SandboxWaitV2": 1}, func(ctx context.Context) error {
					_, err := sb.Info(ctx)
					return err
				}},
				{"Destroy", map[string]int{"SandboxTerminateV2": 1}, func(ctx context.Context) error {
					return sb2.Destroy(ctx)
				}},
			}
			steps = append(steps, rpcStep{"Terminal (a line typed, exit)", map[string]int{"TaskExecStart": 1, "TaskExecStdioRead": 1, "TaskExecWait": 1, "TaskExecStdinWrite": 1}, func(ctx context.Context) error {
				term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"sh", "-c", "read -r l; echo got-$l"}})
				if err != nil {
					return err
				}
				defer term.Close()
				if _, err := term.Write([]byte("x\n")); err != nil {
					return err
				}
				out, err := io.ReadAll(term)
				if err != nil {
					return err
				}
				if code, err := term.Wait(); err != nil || code != 0 {
					return fmt.Errorf("Wait = %d, %v", code, err)
				}
				if !strings.Contains(string(out), "got-x") {
					return fmt.Errorf("terminal output %q", out)
				}
				return nil
			}})
			if gpu != "" {
				steps[9].max = map[string]int{"SandboxWait": 1}
				steps[10].max = map[string]int{"SandboxTerminate": 1}
			}
			rpcs(srv)
			for _, s := range steps {
				if err := s.do(ctx); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				got := rpcs(srv)
				t.Logf("| %s | %d | %s |", s.name, total(got), describeRPCs(got))
				for m, n := range got {
					if n > s.max[m] {
						t.Errorf("%s made %d %s calls; want at most %d (all calls: %s)", s.name, n, m, s.max[m], describeRPCs(got))
					}
				}
			}
			sb.Destroy(ctx)
		})
	}
}
