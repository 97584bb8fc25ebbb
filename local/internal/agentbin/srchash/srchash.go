// Package srchash names the sources of the embedded sandbox agent: a
// digest of every file the agent program is built from, outside the
// standard library, for each architecture it is embedded for. The
// generator records it beside the programs it builds, and a test
// compares it with the sources of the day, so that an agent whose code
// changed cannot go on being embedded as it was.
package srchash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Program is the import path of the agent program.
const Program = "github.com/computesdk-go/compute/local/internal/agent/cmd/compute-agent"

// Arches are the architectures the agent is embedded for (on Linux).
var Arches = []string{"amd64", "arm64"}

// Env is the build environment of the agent for goarch: a static
// program (no cgo), for Linux.
func Env(goarch string) []string {
	return append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=")
}

// Sum is the digest of the agent's sources: for each architecture, every
// package the program depends on outside the standard library, by import
// path and module version, and the names and contents of its Go,
// assembly and embedded files. It runs `go list`, so it needs the Go
// command and the module's sources.
func Sum() (string, error) {
	h := sha256.New()
	for _, arch := range Arches {
		fmt.Fprintf(h, "arch %s\n", arch)
		cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Standard,Module,GoFiles,SFiles,EmbedFiles", Program)
		cmd.Env = Env(arch)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go list %s: %v\n%s", Program, err, stderr.Bytes())
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p struct {
				ImportPath, Dir string
				Standard        bool
				Module          *struct{ Path, Version string }
				GoFiles, SFiles []string
				EmbedFiles      []string
			}
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return "", err
			}
			if p.Standard {
				continue
			}
			fmt.Fprintf(h, "package %s", p.ImportPath)
			if p.Module != nil {
				fmt.Fprintf(h, " %s@%s", p.Module.Path, p.Module.Version)
			}
			h.Write([]byte("\n"))
			for _, files := range [][]string{p.GoFiles, p.SFiles, p.EmbedFiles} {
				for _, name := range files {
					b, err := os.ReadFile(filepath.Join(p.Dir, name))
					if err != nil {
						return "", err
					}
					fmt.Fprintf(h, "file %s %d\n", name, len(b))
					h.Write(b)
				}
			}
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
