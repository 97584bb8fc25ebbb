package modaltest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/computesdk-go/compute"
)

// The guest (Modal's file tool, snapshots) is a copy of this program. On
// this machine's root it finds its dynamic loader and libc where it was
// built; in an image's root they may be missing or other ones. So in a
// sandbox with an image root, a dynamically linked guest gets its loader
// and libraries from this machine, under a directory of its own, and runs
// through the loader: "LOADER --library-path DIR GUEST ARGS...".

// libDirs are where the guest's libraries are looked for on this machine,
// after the directory of its loader.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// dynamicDeps returns the dynamic loader of the ELF executable exe and the
// libraries it needs, transitively, as files of this machine; "" for a
// statically linked one.
func dynamicDeps(exe string) (loader string, libs []string, err error) {
	f, err := elf.Open(exe)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", nil, fmt.Errorf("reading the loader's name: %w", err)
		}
		loader = string(bytes.TrimRight(b, "\x00"))
	}
	if loader == "" {
		return "", nil, nil
	}
	dirs := append([]string{filepath.Dir(loader)}, libDirs...)
	seen := map[string]bool{filepath.Base(loader): true}
	queue, err := f.ImportedLibraries()
	if err != nil {
		return "", nil, err
	}
	for len(queue) > 0 && len(libs) < 64 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		found := ""
		for _, d := range dirs {
			if p := filepath.Join(d, name); fileExists(p) {
				found = p
				break
			}
		}
		if found == "" {
			return "", nil, fmt.Errorf("library %s not found on this machine", name)
		}
		libs = append(libs, found)
		if lf, err := elf.Open(found); err == nil {
			more, _ := lf.ImportedLibraries()
			lf.Close()
			queue = append(queue, more...)
		}
	}
	return loader, libs, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// copyScript writes stdin to the file $1 (mode $2), creating its directory.
const copyScript = `mkdir -p "$(dirname "$1")" && cat > "$1.$$" && chmod "$2" "$1.$$" && mv -f "$1.$$" "$1"`

// copyInto copies the host file src to dst in a provider sandbox.
func copyInto(ctx context.Context, cs *compute.Sandbox, src, dst, mode string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return runScript(ctx, cs, copyScript, f, dst, mode)
}

func runScript(ctx context.Context, cs *compute.Sandbox, script string, stdin *os.File, args ...string) error {
	var errb strings.Builder
	opts := &compute.RunOptions{Stderr: &errb, MaxOutput: -1}
	if stdin != nil {
		opts.Stdin = stdin
	}
	h, err := cs.Start(ctx, append([]string{"/bin/sh", "-c", script, "sh"}, args...), opts)
	if err != nil {
		return err
	}
	res, err := h.Wait()
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("exit code %d: %s", res.ExitCode, strings.TrimSpace(errb.String()))
	}
	return nil
}

// wrapGuest gives the guest installed at tool its loader and libraries in
// a sandbox with an image root, and returns the path of a script that
// runs it through them; a statically linked guest is returned as it is.
func wrapGuest(ctx context.Context, cs *compute.Sandbox, exe, tool string) (string, error) {
	loader, libs, err := dynamicDeps(exe)
	if err != nil {
		return "", fmt.Errorf("finding the libraries of %s: %w", exe, err)
	}
	if loader == "" {
		return tool, nil
	}
	dir := path.Join(path.Dir(path.Dir(tool)), ".lib")
	for _, f := range append([]string{loader}, libs...) {
		if err := copyInto(ctx, cs, f, path.Join(dir, filepath.Base(f)), "755"); err != nil {
			return "", fmt.Errorf("copying %s into the sandbox: %w", f, err)
		}
	}
	wrapper := tool + ".sh"
	script := fmt.Sprintf("#!/bin/sh\nexec %s --library-path %s %s \"$@\"\n", path.Join(dir, filepath.Base(loader)), dir, tool)
	tmp, err := os.CreateTemp("", "modal-guest-wrapper-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.WriteString(script); err != nil {
		return "", err
	}
	if _, err := tmp.Seek(0, 0); err != nil {
		return "", err
	}
	if err := runScript(ctx, cs, copyScript, tmp, wrapper, "755"); err != nil {
		return "", errors.Join(errors.New("writing the guest's wrapper"), err)
	}
	return wrapper, nil
}
