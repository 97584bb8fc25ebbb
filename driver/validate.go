package driver

import (
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
	return nil
}

// MaxImageRef bounds the length of CreateOptions.Image.
const MaxImageRef = 4096

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
