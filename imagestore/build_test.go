//go:build linux

package imagestore

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sys/unix"
)

// A refused registry is refused before anything is fetched, also for a
// reference the store holds already.
func TestPullAllowRegistry(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	s := openStore(t)
	refuse := &PullOptions{AllowRegistry: AllowRegistries("ghcr.io", "docker.io")}
	_, err := s.Pull(context.Background(), ref, refuse)
	if !errors.Is(err, ErrRegistryRefused) || !strings.Contains(err.Error(), "ghcr.io, index.docker.io") || !strings.Contains(err.Error(), reg.host) {
		t.Errorf("pull from a refused registry: %v, want ErrRegistryRefused naming the allowed ones and %s", err, reg.host)
	}
	if n := reg.manifests.Load() + reg.blobGets.Load(); n != 0 {
		t.Errorf("a refused pull made %d registry requests", n)
	}
	if _, err := s.Pull(context.Background(), ref, &PullOptions{AllowRegistry: AllowRegistries(reg.host)}); err != nil {
		t.Fatalf("pull from an allowed registry: %v", err)
	}
	if _, err := s.Pull(context.Background(), ref, refuse); !errors.Is(err, ErrRegistryRefused) {
		t.Errorf("pull of a stored image from a refused registry: %v", err)
	}
	for in, want := range map[string]string{"python:3.12": "index.docker.io", "ghcr.io/o/i:t": "ghcr.io", reg.host + "/x:y": reg.host, "oci:/tmp/x": ""} {
		if got, err := Registry(in); err != nil || got != want {
			t.Errorf("Registry(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Anonymous sends no credentials, whatever the keychain has.
func TestPullAnonymous(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	var authed atomic.Int64
	next := reg.Server.Config.Handler
	reg.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			authed.Add(1)
		}
		next.ServeHTTP(w, r)
	})
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	kc := staticKeychain{}
	if _, err := openStore(t).Pull(context.Background(), ref, &PullOptions{Keychain: kc}); err != nil {
		t.Fatal(err)
	}
	if authed.Load() == 0 {
		t.Fatal("the keychain's credentials were never sent: the test cannot tell anonymous pulls apart")
	}
	authed.Store(0)
	if _, err := openStore(t).Pull(context.Background(), ref, &PullOptions{Keychain: kc, Anonymous: true}); err != nil {
		t.Fatal(err)
	}
	if n := authed.Load(); n != 0 {
		t.Errorf("an anonymous pull sent credentials %d times", n)
	}
}

// Commit copies an overlayfs upper directory into a layer of the store's
// form (whiteouts, opaque directories, modes, links, owners), refuses
// nothing it should keep, follows no link, and Prune drops built images
// not in use.
func TestBuilderCommit(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	s := openStore(t)
	base, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An upper directory as overlayfs leaves it: a 0/0 character device
	// for a deleted file (as root only), an opaque directory, a setuid
	// file, a link out, a skipped file.
	up := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(up, "d"), 0o755))
	must(os.MkdirAll(filepath.Join(up, "o"), 0o750))
	must(unix.Setxattr(filepath.Join(up, "o"), "user.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(up, "o/new"), []byte("new"), 0o644))
	must(os.WriteFile(filepath.Join(up, "tool"), []byte("#!/bin/sh\n"), 0o4755))
	must(os.Symlink("/etc/shadow", filepath.Join(up, "out")))
	must(os.Link(filepath.Join(up, "o/new"), filepath.Join(up, "d/hardlink")))
	must(os.MkdirAll(filepath.Join(up, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(up, "etc/hostname"), []byte("sandbox\n"), 0o644))
	deviceWhiteout := os.Geteuid() == 0
	if deviceWhiteout {
		must(unix.Mknod(filepath.Join(up, "d/gone"), unix.S_IFCHR, 0))
	} else {
		must(os.WriteFile(filepath.Join(up, "d/gone"), nil, 0o644))
		must(unix.Setxattr(filepath.Join(up, "d/gone"), "user.overlay.whiteout", []byte("y"), 0))
	}
	upper, err := os.Open(up)
	must(err)
	defer upper.Close()
	b, err := s.Builder(context.Background())
	must(err)
	key := BuildKey(base.ID, "RUN x", "")
	im, err := b.Commit(context.Background(), base, CommitOptions{Key: key, Upper: upper, Skip: []string{"etc/hostname"},
		Config: Config{Env: []string{"A=1"}}, Build: Build{Base: ref, BaseID: base.ID, Steps: []string{"RUN x"}}})
	b.Close()
	must(err)
	if im.ID != key || len(im.Layers) != len(base.Layers)+1 || im.Build == nil || im.Config.Env[0] != "A=1" {
		t.Fatalf("built image %+v", im)
	}
	top := im.Layers[len(im.Layers)-1].Dir
	x := func(p, attr string) string {
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(top, p), attr, buf)
		if err != nil {
			return "none"
		}
		return string(buf[:n])
	}
	for _, c := range []struct{ p, attr, want string }{
		{"d/gone", xattrWhiteout, "y"}, {"d", xattrOpaque, "x"}, {"o", xattrOpaque, "y"}, {".", xattrOpaque, "none"},
	} {
		if got := x(c.p, c.attr); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.p, c.attr, got, c.want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(top, "d/gone")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("whiteout d/gone: %v %v, want an empty regular file", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(top, "tool")); err != nil || fi.Mode()&os.ModeSetuid != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("tool: %v %v, want 0755 without setuid", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(top, "out")); err != nil || l != "/etc/shadow" {
		t.Errorf("link: %q %v", l, err)
	}
	var a, b2 unix.Stat_t
	if unix.Stat(filepath.Join(top, "o/new"), &a) != nil || unix.Stat(filepath.Join(top, "d/hardlink"), &b2) != nil || a.Ino != b2.Ino {
		t.Errorf("hard links: inodes %d and %d, want one file", a.Ino, b2.Ino)
	}
	if im.Layers[len(im.Layers)-1].Size != 3+int64(len("#!/bin/sh\n")) {
		t.Errorf("layer size %d, want the linked file counted once", im.Layers[len(im.Layers)-1].Size)
	}
	if _, err := os.Lstat(filepath.Join(top, "etc/hostname")); err == nil {
		t.Error("a skipped file was stored")
	}
	if fi, _ := os.Stat(filepath.Join(top, "o")); fi == nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode: %v", fi)
	}
	// Found again by key; listed; pruned once not in use.
	b, _ = s.Builder(context.Background())
	if again, err := b.Find(key); err != nil || again.ID != key {
		t.Errorf("Find: %v %v", again, err)
	}
	b.Close()
	release, err := s.Use(context.Background(), im)
	must(err)
	if res, err := s.Prune(context.Background()); err != nil || res.Images != 0 {
		t.Errorf("prune of a built image in use: %+v %v", res, err)
	}
	release()
	res, err := s.Prune(context.Background())
	if err != nil || res.Images != 1 || res.Layers != 1 {
		t.Errorf("prune after release: %+v %v, want the built image and its layer", res, err)
	}
	if _, err := s.Get(ref); err != nil {
		t.Errorf("prune removed the base image: %v", err)
	}
}

// staticKeychain gives every registry the same basic credentials.
type staticKeychain struct{}

func (staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "user", Password: "secret"}, nil
}
