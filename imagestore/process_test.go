//go:build linux

package imagestore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary, re-executed, be a second process that
// pulls into a shared store.
func TestMain(m *testing.M) {
	if ref := os.Getenv("IMAGESTORE_TEST_PULL"); ref != "" {
		s, err := Open(os.Getenv("IMAGESTORE_TEST_DIR"))
		if err == nil {
			var im *Image
			if im, err = s.Pull(context.Background(), ref, nil); err == nil {
				fmt.Println(im.ID)
				os.Exit(0)
			}
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestConcurrentPullsFromTwoProcesses(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	reg.delay.Store(int64(200 * time.Millisecond)) // so that the two pulls overlap
	dir := t.TempDir()
	t.Cleanup(func() { removeAll(dir) })
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "IMAGESTORE_TEST_PULL="+ref, "IMAGESTORE_TEST_DIR="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	var ids []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v: %s", i, err, outs[i])
		}
		ids = append(ids, strings.TrimSpace(outs[i].String()))
	}
	if ids[0] != ids[1] || !strings.HasPrefix(ids[0], "sha256:") {
		t.Errorf("the processes got %q", ids)
	}
	if n := reg.layerGets.Load(); n != 2 {
		t.Errorf("%d layer downloads by two processes, want 2 (each layer once)", n)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := s.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(im.LayerDirs()[1], "app/main.py")); string(b) != "print(1)" {
		t.Errorf("app/main.py = %q", b)
	}
}

// TestOverlayInUserNamespace mounts an image's layers as an overlay the
// way a sandbox will: unprivileged, in a new user and mount namespace,
// with -o userxattr; the top layer's whiteout and opaque directory must
// hide what the bottom layer has.
func TestOverlayInUserNamespace(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	s := openStore(t)
	im, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := im.LayerDirs()
	mnt := t.TempDir()
	script := `set -e
mount -t overlay overlay -o "userxattr,lowerdir=$2:$1" "$3"
cd "$3"
echo "d: $(ls -A d | tr '\n' ' ')"
echo "o: $(ls -A o | tr '\n' ' ')"
echo "keep: $(cat d/keep)"
echo "tool: $(cat bin/tool)"
test ! -e d/gone && echo "gone: absent"
`
	cmd := exec.Command(unshare, "-Urm", "sh", "-c", script, "sh", dirs[0], dirs[1], mnt)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("unshare failed")) || bytes.Contains(out, []byte("Operation not permitted")) && !bytes.Contains(out, []byte("mount:")) {
			t.Skipf("no unprivileged user namespaces here: %s", out)
		}
		t.Fatalf("overlay mount in a user namespace: %v\n%s", err, out)
	}
	want := "d: keep \no: new \nkeep: k\ntool: #!/bin/sh\ngone: absent\n"
	if string(out) != want {
		t.Errorf("the overlay shows\n%s\nwant\n%s", out, want)
	}
}

// TestKilledPullLeavesNothingComplete kills a pulling process in the
// middle of a layer: what it left is never taken for a layer, and the
// next pull of that layer clears it away.
func TestKilledPullLeavesNothingComplete(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", imageOf(t, "", layerOf(t, file("a", "1"))))
	reg.block.Store(true)
	dir := t.TempDir()
	t.Cleanup(func() { removeAll(dir) })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "IMAGESTORE_TEST_PULL="+ref, "IMAGESTORE_TEST_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for reg.layerGets.Load() == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the pulling process never asked for the layer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	left, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(left) != 1 {
		t.Fatalf("tmp/ holds %d entries after the kill, want the dead pull's one", len(left))
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); err == nil {
		t.Fatal("Get found the image a killed pull was making")
	}
	if ls, _ := os.ReadDir(filepath.Join(dir, "layers")); len(ls) != 0 {
		t.Fatalf("layers/ holds %d entries after the kill", len(ls))
	}
	reg.block.Store(false)
	im, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(im.LayerDirs()[0], "a")); string(b) != "1" {
		t.Errorf("a = %q", b)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ still holds %d entries", len(left))
	}
}
