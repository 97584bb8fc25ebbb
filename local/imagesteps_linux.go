//go:build linux

package local

// Image steps (CreateOptions.ImageSteps) on the local provider: ENV and
// WORKDIR become the image's configuration; RUN steps run in the new
// sandbox itself, in order, before Create returns, under the sandbox's
// own network policy. Nothing is cached yet: every Create with steps runs
// them again (Modal caches its builds).

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/computesdk-go/compute/driver"
)

// imageStep is one parsed step, with the environment and working
// directory the steps before it left.
type imageStep struct {
	instr, arg string
	env        map[string]string // set by ENV steps so far
	dir        string            // the working directory so far; "" for the image's
}

// withSteps returns a copy of img whose configuration has the steps' ENV
// and WORKDIR applied, and the steps parsed, in order.
func (img *sandboxImage) withSteps(steps []string) (*sandboxImage, []imageStep, error) {
	if len(steps) == 0 {
		return img, nil, nil
	}
	im := *img.im
	im.Config.Env = slices.Clone(im.Config.Env)
	env := map[string]string{}
	dir := img.workingDir()
	var parsed []imageStep
	for i, step := range steps {
		instr, arg, err := driver.ParseImageStep(step)
		if err != nil {
			return nil, nil, fmt.Errorf("local: image step %d (%.80q): %w", i+1, step, err)
		}
		switch instr {
		case "ENV":
			k, v, _ := strings.Cut(arg, "=")
			env[k] = v
			im.Config.Env = slices.DeleteFunc(im.Config.Env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
			im.Config.Env = append(im.Config.Env, arg)
		case "WORKDIR":
			if !path.IsAbs(arg) {
				base := dir
				if base == "" {
					base = "/"
				}
				arg = path.Join(base, arg)
			}
			dir = path.Clean(arg)
			im.Config.WorkingDir = dir
		}
		parsed = append(parsed, imageStep{instr: instr, arg: arg, env: cloneMap(env), dir: dir})
	}
	return &sandboxImage{ref: img.ref, im: &im, release: img.release}, parsed, nil
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// runImageSteps runs the RUN steps in s, in order (creating each
// WORKDIR), and fails with the step, its exit code and the tail of its
// output when one fails.
func (s *sandbox) runImageSteps(ctx context.Context, ref string, steps []imageStep) error {
	for i, st := range steps {
		switch st.instr {
		case "WORKDIR":
			if err := s.FileSystem().MkdirAll(ctx, st.dir); err != nil {
				return fmt.Errorf("local: image %s: step %d (WORKDIR %s): %w", ref, i+1, st.arg, err)
			}
		case "RUN":
			out := &tailBuffer{max: 4 << 10}
			proc, err := s.Start(ctx, &driver.ExecRequest{
				Argv:   []string{"/bin/sh", "-c", st.arg},
				Env:    st.env,
				Dir:    st.dir,
				Stdout: out,
				Stderr: out,
			})
			if err != nil {
				return fmt.Errorf("local: image %s: step %d (RUN %.80s): %w", ref, i+1, st.arg, err)
			}
			code, err := proc.Wait()
			if err != nil {
				return fmt.Errorf("local: image %s: step %d (RUN %.80s): %w", ref, i+1, st.arg, err)
			}
			if code != 0 {
				return fmt.Errorf("local: image %s: step %d (RUN %.80s) exited with code %d; the end of its output:\n%s", ref, i+1, st.arg, code, out.String())
			}
		}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimRight(b.buf, "\n"))
}
