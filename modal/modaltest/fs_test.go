package modaltest_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// The SDK's Filesystem execs /__modal/.bin/modal-sandbox-fs-tools; the
// emulator runs its own implementation of that tool inside the sandbox.

func TestFilesystem(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	fs := sb.Filesystem
	ctx := h.ctx

	if err := fs.WriteText(ctx, "hello", "/workspace/a/b/c.txt", nil); err != nil {
		t.Fatal(err)
	}
	if s, err := fs.ReadText(ctx, "/workspace/a/b/c.txt", nil); err != nil || s != "hello" {
		t.Errorf("ReadText = %q, %v", s, err)
	}
	// The file is really in the sandbox.
	if out, _, _ := h.run(sb, []string{"cat", "/workspace/a/b/c.txt"}, nil); out != "hello" {
		t.Errorf("cat in the sandbox: %q", out)
	}
	bin := make([]byte, 1<<20+3)
	rand.Read(bin)
	if err := fs.WriteBytes(ctx, bin, "/tmp/bin", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := fs.ReadBytes(ctx, "/tmp/bin", nil); err != nil || !bytes.Equal(got, bin) {
		t.Errorf("binary round trip: %d bytes, %v", len(got), err)
	}
	if err := fs.WriteText(ctx, "", "/tmp/empty", nil); err != nil {
		t.Fatal(err)
	}

	st, err := fs.Stat(ctx, "/workspace/a/b/c.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "c.txt" || st.Type != modal.FileTypeFile || st.Size != 5 || st.Mode != 0o100644 || st.Permissions != "0644" || st.Owner != "root" || st.ModifiedTime == 0 {
		t.Errorf("Stat = %+v", st)
	}
	h.run(sb, []string{"ln", "-s", "b/c.txt", "/workspace/a/link"}, nil)
	if st, err := fs.Stat(ctx, "/workspace/a/link", nil); err != nil || st.Type != modal.FileTypeSymlink || st.SymlinkTarget == nil || *st.SymlinkTarget != "b/c.txt" {
		t.Errorf("Stat of a symlink = %+v, %v", st, err)
	}

	list, err := fs.ListFiles(ctx, "/workspace/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "b" || list[0].Type != modal.FileTypeDirectory || list[0].Path != "/workspace/a/b" || list[1].Name != "link" || list[1].Type != modal.FileTypeSymlink {
		t.Errorf("ListFiles = %+v", list)
	}
	if err := fs.MakeDirectory(ctx, "/workspace/empty", nil); err != nil {
		t.Fatal(err)
	}
	if list, err := fs.ListFiles(ctx, "/workspace/empty", nil); err != nil || list == nil || len(list) != 0 {
		t.Errorf("ListFiles of an empty directory = %#v, %v", list, err)
	}

	// MakeDirectory: idempotent with parents; strict without.
	no := false
	if err := fs.MakeDirectory(ctx, "/workspace/x/y/z", nil); err != nil {
		t.Error(err)
	}
	if err := fs.MakeDirectory(ctx, "/workspace/x/y/z", nil); err != nil {
		t.Errorf("MakeDirectory of an existing directory: %v", err)
	}
	var exists modal.SandboxFilesystemPathAlreadyExistsError
	if err := fs.MakeDirectory(ctx, "/workspace/x/y/z", &modal.SandboxFilesystemMakeDirectoryParams{CreateParents: &no}); !errors.As(err, &exists) {
		t.Errorf("MakeDirectory(parents=false) of an existing directory: %v", err)
	}
	var notFound modal.SandboxFilesystemNotFoundError
	if err := fs.MakeDirectory(ctx, "/workspace/p/q", &modal.SandboxFilesystemMakeDirectoryParams{CreateParents: &no}); !errors.As(err, &notFound) {
		t.Errorf("MakeDirectory(parents=false) without a parent: %v", err)
	}
	if err := fs.MakeDirectory(ctx, "/workspace/a/b/c.txt", nil); !errors.As(err, &exists) {
		t.Errorf("MakeDirectory over a file: %v", err)
	}
	var notDir modal.SandboxFilesystemNotADirectoryError
	if err := fs.MakeDirectory(ctx, "/workspace/a/b/c.txt/d", nil); !errors.As(err, &notDir) {
		t.Errorf("MakeDirectory under a file: %v", err)
	}

	// Errors of reads, writes and listings.
	if _, err := fs.ReadText(ctx, "/workspace/missing", nil); !errors.As(err, &notFound) {
		t.Errorf("ReadText of a missing file: %v", err)
	}
	var isDir modal.SandboxFilesystemIsADirectoryError
	if _, err := fs.ReadText(ctx, "/workspace/a", nil); !errors.As(err, &isDir) {
		t.Errorf("ReadText of a directory: %v", err)
	}
	if err := fs.WriteText(ctx, "x", "/workspace/a", nil); !errors.As(err, &isDir) {
		t.Errorf("WriteText over a directory: %v", err)
	}
	if err := fs.WriteText(ctx, "x", "/workspace/a/b/c.txt/d", nil); !errors.As(err, &notDir) {
		t.Errorf("WriteText under a file: %v", err)
	}
	if _, err := fs.ListFiles(ctx, "/workspace/a/b/c.txt", nil); !errors.As(err, &notDir) {
		t.Errorf("ListFiles of a file: %v", err)
	}
	if _, err := fs.Stat(ctx, "/workspace/missing", nil); !errors.As(err, &notFound) {
		t.Errorf("Stat of a missing file: %v", err)
	}
	var invalid modal.InvalidError
	if _, err := fs.ReadText(ctx, "relative", nil); !errors.As(err, &invalid) {
		t.Errorf("a relative path: %v", err)
	}

	// Remove: files, symlinks, empty and non-empty directories.
	var notEmpty modal.SandboxFilesystemDirectoryNotEmptyError
	if err := fs.Remove(ctx, "/workspace/x", nil); !errors.As(err, &notEmpty) {
		t.Errorf("Remove of a non-empty directory: %v", err)
	}
	if err := fs.Remove(ctx, "/workspace/x", &modal.SandboxFilesystemRemoveParams{Recursive: true}); err != nil {
		t.Error(err)
	}
	if err := fs.Remove(ctx, "/workspace/a/link", nil); err != nil {
		t.Error(err)
	}
	if _, err := fs.Stat(ctx, "/workspace/a/b/c.txt", nil); err != nil {
		t.Errorf("removing the symlink removed its target: %v", err)
	}
	if err := fs.Remove(ctx, "/workspace/empty", nil); err != nil {
		t.Error(err)
	}
	if err := fs.Remove(ctx, "/workspace/x", nil); !errors.As(err, &notFound) {
		t.Errorf("Remove of a missing path: %v", err)
	}

	// Copies to and from this machine.
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	os.WriteFile(src, bin[:1000], 0o644)
	if err := fs.CopyFromLocal(ctx, src, "/tmp/copied.bin", nil); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "sub", "dst.bin")
	if err := fs.CopyToLocal(ctx, "/tmp/copied.bin", dst, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, bin[:1000]) {
		t.Error("CopyFromLocal + CopyToLocal changed the bytes")
	}
}

func TestFilesystemWatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	fs := sb.Filesystem
	if err := fs.MakeDirectory(h.ctx, "/tmp/w", nil); err != nil {
		t.Fatal(err)
	}
	timeout := 20 * time.Second
	events, err := fs.Watch(h.ctx, "/tmp/w", &modal.SandboxFilesystemWatchParams{Recursive: true, Timeout: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // the watcher starts with the iteration
		fs.WriteText(h.ctx, "x", "/tmp/w/new.txt", nil)
	}()
	for ev, err := range events {
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventType == modal.FileWatchEventTypeCreate && len(ev.Paths) == 1 && ev.Paths[0] == "/tmp/w/new.txt" {
			return // breaking out stops the watcher
		}
	}
	t.Error("no Create event for /tmp/w/new.txt")
}

func TestFilesystemAfterTerminate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	if err := sb.Filesystem.WriteText(h.ctx, "x", "/tmp/x", nil); err != nil {
		t.Fatal(err)
	}
	sb.Terminate(h.ctx, &modal.SandboxTerminateParams{Wait: true})
	var nf modal.NotFoundError
	if _, err := sb.Filesystem.ReadText(h.ctx, "/tmp/x", nil); !errors.As(err, &nf) {
		t.Errorf("ReadText after terminate: %v; want NotFoundError (the sandbox is unavailable)", err)
	}
}
