//go:build linux

package imagestore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir) })
	return s
}

// twoLayers is an image whose top layer deletes a file and makes a
// directory opaque.
func twoLayers(t testing.TB) v1.Image {
	return imageOf(t, "",
		layerOf(t, dir("etc"), file("etc/os-release", "base"), dir("d"), file("d/gone", "g"), file("d/keep", "k"),
			dir("o"), file("o/hidden", "h"), symlink("bin", "usr/bin"), dir("usr"), dir("usr/bin"), file("usr/bin/tool", "#!/bin/sh\n")),
		layerOf(t, dir("d"), whiteout("d", "gone"), dir("o"), file("o/.wh..wh..opq", ""), file("o/new", "n"), dir("app"), file("app/main.py", "print(1)"),
			entry{name: "app/data", body: "d", uid: 1000, gid: 1001}),
	)
}

func TestPullFromRegistry(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	s := openStore(t)
	var reports []Progress
	im, err := s.Pull(context.Background(), ref, &PullOptions{Progress: func(p Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if im.Ref != ref || im.Platform != "linux/"+runtime.GOARCH || !strings.HasPrefix(im.ID, "sha256:") || !strings.HasPrefix(im.Digest, "sha256:") {
		t.Errorf("image = %+v", im)
	}
	if im.Config.WorkingDir != "/app" || im.Config.User != "1000:1000" || len(im.Config.Env) != 2 || im.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config = %+v", im.Config)
	}
	dirs := im.LayerDirs()
	if len(dirs) != 2 {
		t.Fatalf("LayerDirs = %v", dirs)
	}
	if b, _ := os.ReadFile(filepath.Join(dirs[0], "etc/os-release")); string(b) != "base" {
		t.Errorf("bottom layer etc/os-release = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dirs[1], "app/main.py")); string(b) != "print(1)" {
		t.Errorf("top layer app/main.py = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dirs[0], "bin")); l != "usr/bin" {
		t.Errorf("bin -> %q", l)
	}
	if owners, err := im.Layers[1].Owners(); err != nil || len(owners) != 1 || owners[0] != (Owner{Path: "app/data", UID: 1000, GID: 1001}) {
		t.Errorf("top layer's owners = %+v, %v", owners, err)
	}
	if owners, err := im.Layers[0].Owners(); err != nil || len(owners) != 0 {
		t.Errorf("bottom layer's owners = %+v, %v", owners, err)
	}
	if n := reg.blobGets.Load(); n != 3 {
		t.Errorf("first pull: %d blob downloads, want 3 (config + 2 layers)", n)
	}
	last := reports[len(reports)-1]
	if !last.Done || last.Layers != 2 || last.LayersDone != 2 || last.Bytes == 0 || last.BytesDone != last.Bytes {
		t.Errorf("last progress = %+v", last)
	}

	// The second pull resolves the tag and downloads nothing.
	reg.blobGets.Store(0)
	again, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets.Load(); n != 0 {
		t.Errorf("cached pull: %d blob downloads, want 0", n)
	}
	if again.ID != im.ID || strings.Join(again.LayerDirs(), ",") != strings.Join(dirs, ",") {
		t.Errorf("cached pull gave %+v", again)
	}
	// A digest reference already in the store needs no registry at all.
	reg.manifests.Store(0)
	byDigest := reg.host + "/team/app@" + im.Digest
	if _, err := s.Pull(context.Background(), byDigest, nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.manifests.Load() + reg.blobGets.Load(); n != 0 {
		t.Errorf("pull by a stored digest: %d registry requests, want 0", n)
	}
	// Another tag of the same image shares the layers.
	reg2 := reg.push(t, "team/app:v2", twoLayers(t))
	if _, err := s.Pull(context.Background(), reg2, nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets.Load(); n != 0 {
		t.Errorf("pull of another tag of the same image: %d blob downloads, want 0", n)
	}
	got, err := s.Get(ref)
	if err != nil || got.ID != im.ID || len(got.Refs) != 3 {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(shortID(im.ID)); err != nil {
		t.Errorf("Get by id prefix: %v", err)
	}
	if _, err := s.Get(reg.host + "/team/other:v1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown ref: %v, want ErrNotFound", err)
	}
}

func TestPullMultiPlatform(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	mine := imageOf(t, "", layerOf(t, file("arch", runtime.GOARCH)))
	other := "riscv64"
	if runtime.GOARCH == "riscv64" {
		other = "s390x"
	}
	theirs := imageOf(t, "linux/"+other, layerOf(t, file("arch", other)))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: theirs, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := reg.push(t, "multi:latest", idx)
	s := openStore(t)
	im, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(im.LayerDirs()[0], "arch")); string(b) != runtime.GOARCH {
		t.Errorf("picked the %q image, want %q", b, runtime.GOARCH)
	}
	if n := reg.blobGets.Load(); n != 2 {
		t.Errorf("%d blob downloads, want 2 (only this platform's)", n)
	}
	im2, err := s.Pull(context.Background(), ref, &PullOptions{Platform: "linux/" + other})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(im2.LayerDirs()[0], "arch")); string(b) != other {
		t.Errorf("--platform linux/%s picked %q", other, b)
	}
	_, err = s.Pull(context.Background(), ref, &PullOptions{Platform: "linux/mips64le"})
	if err == nil || !strings.Contains(err.Error(), "no image for linux/mips64le") || !strings.Contains(err.Error(), "linux/"+runtime.GOARCH) || !strings.Contains(err.Error(), "linux/"+other) {
		t.Errorf("missing platform: %v; want an error naming it and the available ones", err)
	}
	// A single-platform image for another machine is refused too.
	ref3 := reg.push(t, "foreign:1", theirs)
	if _, err := s.Pull(context.Background(), ref3, nil); err == nil || !strings.Contains(err.Error(), "is an image for linux/"+other) {
		t.Errorf("foreign single-platform image: %v", err)
	}
}

func TestPullOCILayoutAndDockerArchive(t *testing.T) {
	t.Parallel()
	img := twoLayers(t)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	im, err := s.Pull(context.Background(), "oci:"+dir+":v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(im.LayerDirs()[1], "app/main.py")); string(b) != "print(1)" {
		t.Errorf("app/main.py = %q", b)
	}
	if im.Ref != "oci:"+dir+":v1" {
		t.Errorf("Ref = %q", im.Ref)
	}
	// The only image, without a tag.
	if _, err := s.Pull(context.Background(), "oci:"+dir, nil); err != nil {
		t.Errorf("oci:DIR without a tag: %v", err)
	}
	if _, err := s.Pull(context.Background(), "oci:"+dir+":v9", nil); err == nil || !strings.Contains(err.Error(), `no image tagged "v9"; it has v1`) {
		t.Errorf("unknown tag: %v", err)
	}

	archive := filepath.Join(t.TempDir(), "saved.tar")
	if err := tarball.WriteToFile(archive, mustTag(t, "saved:latest"), img); err != nil {
		t.Fatal(err)
	}
	other := openStore(t)
	im2, err := other.Pull(context.Background(), "docker-archive:"+archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if im2.ID != im.ID || im2.Digest != "" {
		t.Errorf("docker-archive image: id %s digest %q; want id %s and no digest", im2.ID, im2.Digest, im.ID)
	}
	if b, _ := os.ReadFile(filepath.Join(im2.LayerDirs()[0], "etc/os-release")); string(b) != "base" {
		t.Errorf("etc/os-release = %q", b)
	}
}

func TestPullRefusesTamperedLayers(t *testing.T) {
	t.Parallel()
	t.Run("blob", func(t *testing.T) {
		img := imageOf(t, "", layerOf(t, file("a", "original")))
		dir := t.TempDir()
		p, _ := layout.Write(dir, empty.Index)
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		// Replace the layer blob with another valid layer of the same size.
		m, _ := img.Manifest()
		evil := layerOf(t, file("a", "tampered"))
		rc, _ := evil.Compressed()
		blob := readAll(t, rc)
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", m.Layers[0].Digest.Hex), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		s := openStore(t)
		_, err := s.Pull(context.Background(), "oci:"+dir, &PullOptions{})
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
		assertNothingStored(t, s)
	})
	for name, tamper := range map[string]func(orig []byte) []byte{
		// Another layer: another size too.
		"registry blob": func([]byte) []byte {
			rc, _ := layerOf(t, file("a", "tampered")).Compressed()
			return readAll(t, rc)
		},
		// The same tar, the same size, one byte of the gzip header
		// (its OS field) changed: only the blob's digest can tell.
		"registry blob same size": func(orig []byte) []byte {
			b := append([]byte(nil), orig...)
			b[9] ^= 0x01
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			layer := layerOf(t, file("a", "original"))
			img := imageOf(t, "", layer)
			reg := newRegistry(t)
			ref := reg.push(t, "lying:1", img)
			d, _ := layer.Digest()
			rc, _ := layer.Compressed()
			reg.swap.Store(d.String(), tamper(readAll(t, rc)))
			s := openStore(t)
			_, err := s.Pull(context.Background(), ref, nil)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
			assertNothingStored(t, s)
		})
	}
	t.Run("diff_id", func(t *testing.T) {
		img := imageOf(t, "", layerOf(t, file("a", "original")))
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
		bad, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		reg := newRegistry(t)
		ref := reg.push(t, "bad:1", bad)
		s := openStore(t)
		_, err = s.Pull(context.Background(), ref, nil)
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
		assertNothingStored(t, s)
	})
	t.Run("too large", func(t *testing.T) {
		reg := newRegistry(t)
		ref := reg.push(t, "big:1", imageOf(t, "", layerOf(t, file("big", strings.Repeat("z", 3<<20)))))
		s := openStore(t)
		_, err := s.Pull(context.Background(), ref, &PullOptions{MaxSize: 1 << 20})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		assertNothingStored(t, s)
	})
	t.Run("hostile entry", func(t *testing.T) {
		reg := newRegistry(t)
		ref := reg.push(t, "evil:1", imageOf(t, "", layerOf(t, file("ok", "1")), layerOf(t, file("../../escape", "x"))))
		s := openStore(t)
		_, err := s.Pull(context.Background(), ref, nil)
		if !errors.Is(err, ErrHostileLayer) {
			t.Fatalf("err = %v, want ErrHostileLayer", err)
		}
		if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after a refused pull: %v", err)
		}
		assertNoTemp(t, s)
	})
}

func readAll(t testing.TB, rc interface {
	Read([]byte) (int, error)
	Close() error
}) []byte {
	t.Helper()
	defer rc.Close()
	var b []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			return b
		}
	}
}

func assertNothingStored(t *testing.T, s *Store) {
	t.Helper()
	for _, sub := range []string{"images", "layers"} {
		ents, _ := os.ReadDir(filepath.Join(s.dir, sub))
		if len(ents) != 0 {
			t.Errorf("%s/ holds %d entries after a failed pull", sub, len(ents))
		}
	}
	assertNoTemp(t, s)
}

func assertNoTemp(t *testing.T, s *Store) {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d entries after a failed pull", len(ents))
	}
}

func TestPullCancelledLeavesNothing(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "slow:1", imageOf(t, "", layerOf(t, file("a", "1"))))
	reg.block.Store(true)
	s := openStore(t)
	// The hang guard's deadline fails the test with DeadlineExceeded.
	guard, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	ctx, cancel := context.WithCancel(guard)
	go func() {
		for reg.layerGets.Load() == 0 && guard.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel() // in the middle of the layer's download
	}()
	_, err := s.Pull(ctx, ref, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertNothingStored(t, s)
	// A later pull completes.
	reg.block.Store(false)
	if _, err := s.Pull(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentPullsInOneProcess(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := reg.push(t, "team/app:v1", twoLayers(t))
	s := openStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half through their own *Store on the same directory.
			st := s
			if i%2 == 1 {
				st, _ = Open(s.Dir())
			}
			_, errs[i] = st.Pull(context.Background(), ref, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d: %v", i, err)
		}
	}
	if n := layerDownloads(t, reg, ref); n != 2 {
		t.Errorf("%d layer downloads by 8 concurrent pulls, want 2 (each layer once)", n)
	}
}

// layerDownloads is the blob downloads minus the configs: each pull that
// found no image record fetched the config once.
func layerDownloads(t *testing.T, reg *testRegistry, ref string) int64 {
	t.Helper()
	return reg.layerGets.Load()
}

func TestRemoveAndPrune(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	shared := layerOf(t, file("shared", "s"))
	a := reg.push(t, "a:1", imageOf(t, "", shared, layerOf(t, file("a", "a"))))
	b := reg.push(t, "b:1", imageOf(t, "", shared, layerOf(t, file("b", "b"))))
	s := openStore(t)
	ctx := context.Background()
	imA, err := s.Pull(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d images, %v", len(list), err)
	}
	if list[0].Size == 0 {
		t.Errorf("size 0: %+v", list[0])
	}
	// In use: not removed.
	release, err := s.Use(ctx, imA)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, a); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove of an image in use: %v, want ErrInUse", err)
	}
	release()
	if err := s.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(a); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if err := s.Remove(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	// b's layers stay, a's own layer went.
	imB, err := s.Get(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range imB.LayerDirs() {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("b's layer gone: %v", err)
		}
	}
	if layers, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(layers) != 2 {
		t.Errorf("%d layers left, want b's 2", len(layers))
	}
	// A tag that moves leaves its old image unnamed, for Prune.
	reg.push(t, "b:1", imageOf(t, "", layerOf(t, file("b", "b2"))))
	if _, err := s.Pull(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(s.dir, "tmp", "layer-left-by-a-crash", "root", "ro"), 0o755)
	os.Chmod(filepath.Join(s.dir, "tmp", "layer-left-by-a-crash", "root", "ro"), 0o555)
	// The old image is in use: Prune keeps it and its layers.
	releaseB, err := s.Use(ctx, imB)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 0 || res.Layers != 0 {
		t.Errorf("Prune while the old image is in use = %+v, want nothing removed", res)
	}
	for _, d := range imB.LayerDirs() {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("a layer in use was pruned: %v", err)
		}
	}
	releaseB()
	res, err = s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 1 || res.Layers != 2 || res.Bytes == 0 {
		t.Errorf("Prune = %+v, want 1 image and 2 layers", res)
	}
	assertNoTemp(t, s)
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("after prune: %d images", len(list))
	}
	// By id.
	im, _ := s.Get(b)
	if err := s.Remove(ctx, shortID(im.ID)); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("after rm by id: %d images", len(list))
	}
	if layers, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(layers) != 0 {
		t.Errorf("%d layers left after removing everything", len(layers))
	}
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{"localhost:5000": true, "127.0.0.1": true, "127.3.4.5:80": true, "[::1]:5000": true,
		"10.0.0.1:5000": false, "192.168.1.2": false, "registry.local:5000": false, "example.com": false} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v", host, got)
		}
	}
	tr := loopbackHTTPOnly{next: http.DefaultTransport}
	req, _ := http.NewRequest("GET", "http://10.0.0.1:5000/v2/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("plain HTTP to a private address: %v", err)
	}
	// go-containerregistry would speak plain HTTP to a private address
	// (RFC 1918) after HTTPS fails; the store refuses.
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Pull(ctx, "10.255.255.1:5000/img:1", &PullOptions{Transport: failTLS{}})
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("pull from a private registry without TLS: %v", err)
	}
}

// failTLS fails every HTTPS request at once, as an unreachable
// registry would, without touching the network.
type failTLS struct{}

func (failTLS) RoundTrip(req *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("no TLS here: %s", req.URL)
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"python:3.12-slim":                   "python:3.12-slim",
		"docker.io/library/python:3.12-slim": "python:3.12-slim",
		"python":                             "python:latest",
		"org/img":                            "org/img:latest",
		"ghcr.io/org/img:tag":                "ghcr.io/org/img:tag",
		"docker-archive:/x/y.tar":            "docker-archive:/x/y.tar",
		"oci:/x/layout:v1":                   "oci:/x/layout:v1",
		"oci:/x/layout":                      "oci:/x/layout",
	} {
		src, err := parseRef(in)
		if err != nil || src.key != want {
			t.Errorf("parseRef(%q) = %v, %v; want %q", in, src, err, want)
		}
	}
	for _, bad := range []string{"", "https://example.com/img", "UPPER/case", "oci:", "docker-archive:"} {
		if _, err := parseRef(bad); err == nil {
			t.Errorf("parseRef(%q) accepted", bad)
		}
	}
}

func TestLayerMediaTypes(t *testing.T) {
	t.Parallel()
	// An uncompressed OCI layer and a zstd one.
	b := tarOf(t, file("z", "zstd!"))
	zl, err := tarball.LayerFromOpener(func() (ioReadCloser, error) { return nopCloser(b), nil }, tarball.WithCompression("zstd"), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t)
	ref := reg.push(t, "zstd:1", imageOf(t, "", zl))
	s := openStore(t)
	im, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(im.LayerDirs()[0], "z")); string(got) != "zstd!" {
		t.Errorf("z = %q", got)
	}
}

func mustTag(t testing.TB, s string) nameTag {
	t.Helper()
	tag, err := newTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// A lock on an image that is let go a moment after removal first finds it
// held (as a process forked at that moment holds a copy of the lock until
// its exec) does not make Remove or Prune call the image in use; one that
// stays held does.
func TestRemoveWaitsForAReleasedLock(t *testing.T) {
	reg := newRegistry(t)
	old := reg.push(t, "a:1", imageOf(t, "", layerOf(t, file("a", "1"))))
	s := openStore(t)
	ctx := context.Background()
	im, err := s.Pull(ctx, old, nil)
	if err != nil {
		t.Fatal(err)
	}
	// hold takes a shared lock on im's lock file, as a copy of a Use's
	// descriptor would hold it; the returned func lets it go.
	hold := func(id string) func() {
		f, err := os.OpenFile(s.imageLock(id), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	var busy []string
	t.Cleanup(func() { testHookBusy = nil })

	// Prune: an unnamed image (its tag moved) held a moment longer.
	reg.push(t, "a:1", imageOf(t, "", layerOf(t, file("a", "2"))))
	if _, err := s.Pull(ctx, old, nil); err != nil {
		t.Fatal(err)
	}
	letGo := hold(im.ID)
	testHookBusy = func(id string) { busy = append(busy, id); letGo() }
	res, err := s.Prune(ctx)
	if err != nil || res.Images != 1 || len(busy) != 1 || busy[0] != im.ID {
		t.Fatalf("Prune with the old image's lock let go once found busy: %+v, %v (found busy: %v); want it removed", res, err, busy)
	}

	// Remove: the same, then a holder that stays.
	cur, err := s.Get(old)
	if err != nil {
		t.Fatal(err)
	}
	letGo = hold(cur.ID)
	busy = nil
	if err := s.Remove(ctx, cur.ID); err != nil || len(busy) != 1 {
		t.Fatalf("Remove with the lock let go once found busy: %v (found busy %d times); want it removed", err, len(busy))
	}
	b, err := s.Pull(ctx, reg.push(t, "b:1", imageOf(t, "", layerOf(t, file("b", "1")))), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hold(b.ID)()
	testHookBusy = func(string) {}
	if err := s.Remove(ctx, b.ID); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove with the lock held throughout: %v; want ErrInUse", err)
	}
}
