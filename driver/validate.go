package driver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Validate reports whether o is well formed, with an error wrapping
// ErrInvalid that names the first problem. Package compute calls it before
// any provider sees o, so a provider may assume it; a server calls it to
// refuse bad input before it spends anything on it.
func (o *CreateOptions) Validate() error {
	if o.Timeout < 0 {
		return fmt.Errorf("compute: negative timeout %v: %w", o.Timeout, ErrInvalid)
	}
	if err := ValidateEnv(o.Env); err != nil {
		return err
	}
	switch o.Runtime {
	case "", Python, Node:
	default:
		return fmt.Errorf("compute: unknown runtime %q (want %q or %q): %w", o.Runtime, Python, Node, ErrInvalid)
	}
	switch o.Network {
	case NetworkDefault, NetworkNone, NetworkHost:
	default:
		return fmt.Errorf("compute: unknown network policy %q (want %q or %q): %w", o.Network, NetworkNone, NetworkHost, ErrInvalid)
	}
	for _, dest := range o.NetworkAllow {
		host, port, err := net.SplitHostPort(dest)
		if err != nil || host == "" {
			return fmt.Errorf("compute: network allowlist entry %q is not host:port: %w", dest, ErrInvalid)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("compute: network allowlist entry %q has no valid port: %w", dest, ErrInvalid)
		}
	}
	if len(o.NetworkAllow) > 0 && o.Network == NetworkHost {
		return fmt.Errorf("compute: NetworkAllow cannot be combined with NetworkHost (which allows everything): %w", ErrInvalid)
	}
	if strings.ContainsRune(o.Dir, 0) {
		return fmt.Errorf("compute: working directory contains a NUL byte: %w", ErrInvalid)
	}
	if len(o.Image) > MaxImageRef || strings.ContainsAny(o.Image, "\x00\n\r") {
		return fmt.Errorf("compute: image %.80q is not an image reference (no NUL or line breaks, at most %d bytes): %w", o.Image, MaxImageRef, ErrInvalid)
	}
	if err := ValidateImageSteps(o.Image, o.ImageSteps); err != nil {
		return err
	}
	if o.ImageContext == nil {
		for i, step := range o.ImageSteps {
			if instr, _, _ := ParseImageStep(step); instr == "COPY" {
				return fmt.Errorf("compute: image step %d (%.80q): COPY needs the files it copies from: set CreateOptions.ImageContext (e.g. os.DirFS(dir)): %w", i+1, step, ErrInvalid)
			}
		}
	}
	return nil
}

// MaxImageRef bounds the length of CreateOptions.Image.
const MaxImageRef = 4096

// MaxImageSteps bounds the number of CreateOptions.ImageSteps, and
// MaxImageStep the length of one.
const (
	MaxImageSteps = 100
	MaxImageStep  = 16 << 10
)

// ValidateImageSteps reports whether steps can be built on image: image
// is not empty, there are at most MaxImageSteps, and each is a RUN, ENV,
// WORKDIR or COPY line (see CreateOptions.ImageSteps) of at most
// MaxImageStep bytes with no NUL or line break. The error names the step
// and wraps ErrInvalid (ErrUnsupported for ADD).
func ValidateImageSteps(image string, steps []string) error {
	if len(steps) == 0 {
		return nil
	}
	if image == "" {
		return fmt.Errorf("compute: image steps need a base image (CreateOptions.Image): %w", ErrInvalid)
	}
	if len(steps) > MaxImageSteps {
		return fmt.Errorf("compute: %d image steps, more than %d; merge RUN steps with && or build the image elsewhere: %w", len(steps), MaxImageSteps, ErrInvalid)
	}
	for i, step := range steps {
		if _, _, err := ParseImageStep(step); errors.Is(err, ErrUnsupported) {
			return fmt.Errorf("compute: image step %d (%.80q): %w", i+1, step, err)
		} else if err != nil {
			return fmt.Errorf("compute: image step %d (%.80q): %v: %w", i+1, step, err, ErrInvalid)
		}
	}
	return nil
}

// ParseImageStep splits an image step into its instruction, upper case
// ("RUN", "ENV" or "WORKDIR"), and its argument, trimmed. For ENV the
// argument is returned as "K=V" whichever form the step used. COPY and
// ADD are refused with an error matching ErrUnsupported.
func ParseImageStep(step string) (instr, arg string, err error) {
	if len(step) > MaxImageStep {
		return "", "", fmt.Errorf("longer than %d bytes", MaxImageStep)
	}
	if strings.ContainsAny(step, "\x00\n\r") {
		return "", "", fmt.Errorf("holds a NUL or a line break (one Dockerfile line per step)")
	}
	step = strings.TrimSpace(step)
	if step == "" {
		return "", "", fmt.Errorf("empty")
	}
	instr = step
	if i := strings.IndexAny(step, " \t"); i >= 0 {
		instr, arg = step[:i], step[i+1:]
	}
	instr, arg = strings.ToUpper(instr), strings.TrimSpace(arg)
	switch instr {
	case "RUN":
		if arg == "" {
			return "", "", fmt.Errorf("RUN without a command")
		}
		if strings.HasPrefix(arg, "[") {
			return "", "", fmt.Errorf("exec-form RUN ([...]) is not supported; write the shell form (RUN cmd args)")
		}
	case "ENV":
		var k, v string
		i, e := strings.IndexAny(arg, " \t"), strings.IndexByte(arg, '=')
		switch {
		case e >= 0 && (i < 0 || e < i):
			k, v = arg[:e], arg[e+1:]
		case i >= 0:
			k, v = arg[:i], strings.TrimSpace(arg[i+1:])
		}
		if k == "" {
			return "", "", fmt.Errorf("ENV needs NAME=value (or NAME value)")
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		arg = k + "=" + v
	case "WORKDIR":
		if arg == "" {
			return "", "", fmt.Errorf("WORKDIR without a directory")
		}
	case "COPY":
		if _, _, err := ParseCopy(arg); err != nil {
			return "", "", err
		}
	case "ADD":
		return "", "", fmt.Errorf("ADD is not supported (it fetches URLs and unpacks archives); write COPY, or RUN a download: %w", ErrUnsupported)
	default:
		return "", "", fmt.Errorf("unknown instruction %q; image steps take RUN, ENV, WORKDIR and COPY", instr)
	}
	return instr, arg, nil
}

// ValidateEnv reports whether env can be a process environment: names are
// not empty and hold no '=' or NUL, values hold no NUL. The error wraps
// ErrInvalid.
func ValidateEnv(env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("compute: invalid environment variable name %q: %w", k, ErrInvalid)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("compute: environment variable %s contains a NUL byte: %w", k, ErrInvalid)
		}
	}
	return nil
}
