//go:build linux

package local_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/local/internal/agent"
)

// The sandbox's /etc mirrors the host's allowlisted entries, resolved by
// the host for the agents (agentproto.Config.Etc): small regular files
// with the host's contents, directories with the host's entries, links
// as the same links; and nothing else of the host's (no shadow).
func TestEtcMirror(t *testing.T) {
	entries := agent.EtcEntries()
	if len(entries) == 0 {
		t.Skip("none of the allowlisted /etc entries exists on this host")
	}
	ctx := context.Background()
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	checked := 0
	for _, path := range entries {
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		switch {
		case fi.Mode().IsRegular() && fi.Size() <= 1<<20:
			want, err := os.ReadFile(path)
			if err != nil {
				continue // unreadable here: left out there too
			}
			got, err := sb.FileSystem().ReadFile(ctx, path)
			if err != nil || string(got) != string(want) {
				t.Errorf("%s in the sandbox: %d bytes, %v; want the host's %d bytes", path, len(got), err, len(want))
			}
		case fi.IsDir():
			hostNames, err := os.ReadDir(path)
			if err != nil {
				continue
			}
			var want []string
			for _, e := range hostNames {
				want = append(want, e.Name())
			}
			got := strings.Fields(shell(t, sb, "ls -A "+path).Stdout)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("ls %s in the sandbox = %v; want the host's %v", path, got, want)
			}
		case fi.Mode()&os.ModeSymlink != 0:
			want, _ := os.Readlink(path)
			if got := strings.TrimSpace(shell(t, sb, "readlink "+path).Stdout); got != want {
				t.Errorf("readlink %s in the sandbox = %q; want the host's %q", path, got, want)
			}
		default:
			continue
		}
		checked++
	}
	if checked == 0 {
		t.Fatalf("no /etc entry of %v could be compared", entries)
	}
	if out := shell(t, sb, "test -e /etc/shadow && echo present; echo done").Stdout; out != "done\n" {
		t.Errorf("/etc/shadow in the sandbox: %q", out)
	}
}
