//go:build linux

package local_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local"
)

// Images in these tests are built here, from the host's static busybox
// (Debian's busybox-static, which .ci/run installs): no registry, no
// internet. They come as OCI layouts ("oci:DIR:TAG").

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name string
	typ  byte // tar.TypeReg when 0
	body []byte
	link string
	mode int64
}

func regular(name, body string) tarEntry {
	return tarEntry{name: name, body: []byte(body), mode: 0o644}
}
func directory(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func link(name, to string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}

// testLayer is a layer of entries, owned by root.
func testLayer(t testing.TB, entries ...tarEntry) v1.Layer {
	t.Helper()
	owned := make([]ownedEntry, len(entries))
	for i, e := range entries {
		owned[i] = ownedEntry{tarEntry: e}
	}
	return ownedLayer(t, owned...)
}

// ownedEntry is a tar entry with an owner.
type ownedEntry struct {
	tarEntry
	uid, gid int
}

func owned(e tarEntry, uid, gid int) ownedEntry { return ownedEntry{e, uid, gid} }

// ownedLayer is a layer of entries with their owners.
func ownedLayer(t testing.TB, entries ...ownedEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.gid,
			ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// busyboxLayer is a layer with the host's static busybox at /bin/busybox
// and its applets (sh, cat, ls, mount, ...) as links to it.
func busyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("no /bin/busybox on this machine (apt-get install busybox-static): image roots are tested with it")
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Skipf("/bin/busybox --list: %v", err)
	}
	entries := []tarEntry{directory("bin"), {name: "bin/busybox", body: bin, mode: 0o755}}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			entries = append(entries, link("bin/"+applet, "busybox"))
		}
	}
	return testLayer(t, entries...)
}

// writeImage writes an image of layers (bottom first) with config to an
// OCI layout under dir and returns its reference.
func writeImage(t testing.TB, dir string, cfg v1.Config, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", hostArch()
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "test"})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":test"
}

func hostArch() string {
	b, _ := exec.Command("go", "env", "GOARCH").Output()
	if a := strings.TrimSpace(string(b)); a != "" {
		return a
	}
	return "amd64"
}

// testImage is the image most tests use: busybox, a marker file, an
// upper layer that deletes a file and makes a directory opaque, an
// environment and a working directory.
type testImage struct {
	ref   string
	store *imagestore.Store
}

var (
	sharedImageOnce sync.Once
	sharedImage     testImage
	sharedImageErr  error
	sharedImageDir  string
)

// newTestImage returns the shared test image, built once per test
// binary, its store in a directory TestMain removes.
func newTestImage(t testing.TB) testImage {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox on this machine (apt-get install busybox-static): image roots are tested with it")
	}
	sharedImageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "compute-image-test-")
		if err != nil {
			sharedImageErr = err
			return
		}
		sharedImageDir = dir
		base := busyboxLayer(t)
		files := testLayer(t,
			directory("etc"), regular("etc/marker", "from the image\n"),
			regular("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
			regular("etc/group", "root:x:0:\nuser:x:1000:\n"),
			directory("gone"), regular("gone/file", "deleted above\n"), regular("gone/kept", "kept\n"),
			directory("opq"), regular("opq/old", "hidden by the opaque dir above\n"),
			directory("srv"), directory("srv/app"), regular("srv/app/main.txt", "app\n"),
		)
		upper := testLayer(t,
			directory("gone"), regular("gone/.wh.file", ""),
			directory("opq"), regular("opq/.wh..wh..opq", ""), regular("opq/new", "new\n"),
			regular("etc/upper", "from the upper layer\n"),
		)
		ref := writeImage(t, filepath.Join(dir, "layout"), v1.Config{
			Env:        []string{"PATH=/bin:/image/bin", "FROM_IMAGE=yes", "OVERRIDDEN=image"},
			WorkingDir: "/srv/app",
		}, base, files, upper)
		st, err := imagestore.Open(filepath.Join(dir, "store"))
		if err != nil {
			sharedImageErr = err
			return
		}
		sharedImage = testImage{ref: ref, store: st}
	})
	if sharedImageErr != nil {
		t.Fatal(sharedImageErr)
	}
	return sharedImage
}

// imageProvider is a provider whose images are the test store's.
func imageProvider(t testing.TB, img testImage, opts local.Options) *local.Provider {
	t.Helper()
	opts.ImageStore = img.store
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func createIn(t testing.TB, p *local.Provider, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	return sb
}

// treeSum sums a directory tree: names, modes, sizes, contents.
func treeSum(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, p := range names {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %v %d %v\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestImageRoot(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, Env: map[string]string{"OVERRIDDEN": "create"}})

	im, err := img.store.Get(img.ref)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, d := range im.LayerDirs() {
		before[d] = treeSum(t, d)
	}

	for _, c := range []struct{ name, script, want string }{
		{"image files", "cat /etc/marker /etc/upper", "from the image\nfrom the upper layer\n"},
		{"no host system", "ls /usr /lib /etc/ssl 2>/dev/null; test -e /usr/bin/python3 && echo host; echo done", "done\n"},
		{"shell is the image's", "readlink /proc/$$/exe; busybox | head -1 | cut -d' ' -f1", "/bin/busybox\nBusyBox\n"},
		{"whiteout", "ls /gone", "kept\n"},
		{"opaque dir", "ls /opq", "new\n"},
		{"working dir", "pwd", "/srv/app\n"},
		{"env", "echo $PATH $FROM_IMAGE $OVERRIDDEN $HOME", "/bin:/image/bin yes create /workspace\n"},
		{"owned by root", "id -u; id -g; stat -c %u:%g /etc/marker /bin/busybox /srv/app", "0\n0\n0:0\n0:0\n0:0\n"},
		{"writable", "echo changed >> /etc/marker && rm /gone/kept && echo new > /etc/new && mkdir -p /opt/x && cat /etc/marker /etc/new && ls /gone | wc -l", "from the image\nchanged\nnew\n0\n"},
		{"identity files", "cat /etc/hostname; grep -c 127.0.0.1 /etc/hosts", "sandbox\n1\n"},
		{"proc dev tmp workspace", "test -r /proc/self/status && test -c /dev/null && test -d /dev/pts && touch /tmp/t /workspace/w && stat -c %a /tmp && echo ok", "1777\nok\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := shell(t, sb, c.script)
			if res.Stdout != c.want || res.ExitCode != 0 {
				t.Errorf("%s\n= %q (exit %d, stderr %q)\nwant %q", c.script, res.Stdout, res.ExitCode, res.Stderr, c.want)
			}
		})
	}

	// The filesystem API sees the image root too.
	ctx := context.Background()
	if b, err := sb.FileSystem().ReadFile(ctx, "/etc/marker"); err != nil || string(b) != "from the image\nchanged\n" {
		t.Errorf("ReadFile(/etc/marker) = %q, %v", b, err)
	}

	// Writes went to this sandbox's layer: the cache is as it was, and
	// another sandbox of the image sees the image as it is.
	for d, sum := range before {
		if treeSum(t, d) != sum {
			t.Errorf("layer %s changed", d)
		}
	}
	other := createIn(t, p, &compute.CreateOptions{Image: img.ref})
	res := shell(t, other, "cat /etc/marker; test -e /etc/new && echo leaked; ls /gone; test -e /opt && echo leaked; true")
	if res.Stdout != "from the image\nkept\n" {
		t.Errorf("second sandbox sees %q, want the image unchanged", res.Stdout)
	}

	// Info says what the root is.
	info, err := sb.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(info.Limits, "\n"), "root: image "+img.ref) {
		t.Errorf("Info.Limits do not name the image root:\n%s", strings.Join(info.Limits, "\n"))
	}
}

func TestImageCreateDirWins(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, Dir: "/elsewhere"})
	if res := shell(t, sb, "pwd"); res.Stdout != "/elsewhere\n" {
		t.Errorf("pwd = %q, want /elsewhere", res.Stdout)
	}
}

// The disk size caps what a sandbox writes over its image too.
func TestImageDiskQuota(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{DiskSize: 8 << 20})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref})
	res := shell(t, sb, "dd if=/dev/zero of=/etc/big bs=1M count=32 2>&1; echo rc=$?")
	if !strings.Contains(res.Stdout, "No space left") {
		t.Errorf("writing 32 MiB over an 8 MiB disk: %q, want ENOSPC", res.Stdout)
	}
}

// Destroy leaves no mount, directory or in-use mark behind, and an
// image in use survives Prune until its sandboxes are gone.
func TestImageDestroyAndPrune(t *testing.T) {
	dir := t.TempDir()
	ref := writeImage(t, filepath.Join(dir, "layout"), v1.Config{}, busyboxLayer(t), testLayer(t, regular("marker", "m\n")))
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	mountsBefore := hostMounts(t)
	staging, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("compute-root-%d-*", os.Getpid())))

	p, err := local.New(local.Options{ImageStore: st, Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	c := compute.New(compute.Config{Provider: p})
	sb, err := c.Create(ctx, &compute.CreateOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	if res := shell(t, sb, "cat /marker"); res.Stdout != "m\n" {
		t.Fatalf("cat /marker = %q", res.Stdout)
	}
	// Unnamed, the image is what Prune removes, unless it is in use.
	if err := st.Remove(ctx, ref); !errors.Is(err, imagestore.ErrInUse) {
		t.Errorf("Remove of an image in use = %v, want ErrInUse", err)
	}
	if _, err := st.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ref); err != nil {
		t.Fatalf("image in use gone after Prune: %v", err)
	}
	if res := shell(t, sb, "cat /marker"); res.Stdout != "m\n" {
		t.Fatalf("after Prune, cat /marker = %q", res.Stdout)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if got := hostMounts(t); got != mountsBefore {
		t.Errorf("host mounts changed by a sandbox's life:\nbefore:\n%s\nafter:\n%s", mountsBefore, got)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("compute-root-%d-*", os.Getpid())))
	if len(after) > len(staging) {
		t.Errorf("staging directories left: %v", after)
	}
	// Released: now it can go.
	if err := st.Remove(ctx, ref); err != nil {
		t.Errorf("Remove after Destroy: %v", err)
	}
	if list, _ := st.List(); len(list) != 0 {
		t.Errorf("store still lists %d images", len(list))
	}
	layers, _ := os.ReadDir(filepath.Join(dir, "store", "layers"))
	for _, l := range layers {
		if !strings.HasPrefix(l.Name(), ".") && !strings.HasSuffix(l.Name(), ".lock") {
			t.Errorf("layer left in the store: %s", l.Name())
		}
	}
}

// hostMounts lists this process's mounts (the host's mount namespace).
func hostMounts(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			lines = append(lines, f[4])
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := local.New(local.Options{ImageStore: st, Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()

	// An image that cannot be pulled: the error names it and says why.
	missing := "oci:" + filepath.Join(dir, "nowhere") + ":v1"
	_, err = c.Create(ctx, &compute.CreateOptions{Image: missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Create with an unpullable image: %v, want an error naming %s", err, missing)
	}
	reg := "127.0.0.1:1/none/such:tag"
	_, err = c.Create(ctx, &compute.CreateOptions{Image: reg})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/none/such") {
		t.Errorf("Create with an unreachable registry: %v, want an error naming it", err)
	}

	// An image's USER: image_user_test.go.
	bb := busyboxLayer(t)

	// No isolation, no image root.
	none, err := local.New(local.Options{Isolation: local.IsolationNone, ImageStore: st})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	ref := writeImage(t, filepath.Join(dir, "plain"), v1.Config{}, bb)
	if _, err := compute.New(compute.Config{Provider: none}).Create(ctx, &compute.CreateOptions{Image: ref}); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("IsolationNone with an image: %v, want ErrUnsupported", err)
	}
}

// An image whose top-level directories are links out of it cannot lead
// the root's mounts or identity files onto the host's tree.
func TestImageHostileLinks(t *testing.T) {
	dir := t.TempDir()
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	ref := writeImage(t, filepath.Join(dir, "layout"), v1.Config{}, busyboxLayer(t), testLayer(t,
		link("etc", target), link("tmp", target), link("proc", "/etc"), link("dev", target), link("workspace", target),
	))
	p := imageProvider(t, testImage{ref: ref, store: st}, local.Options{Network: true})
	sb := createIn(t, p, &compute.CreateOptions{Image: ref})
	res := shell(t, sb, "test -L /etc || test -L /tmp || test -L /proc || test -L /dev || test -L /workspace && echo link; cat /etc/hostname; test -r /proc/self/status && echo proc")
	if res.Stdout != "sandbox\nproc\n" {
		t.Errorf("= %q, want real directories", res.Stdout)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("the sandbox's setup wrote to the host through the image's links: %v", entries)
	}
}

func TestMain(m *testing.M) {
	if msg := useCurrentAgent(); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	code := m.Run()
	for _, dir := range []string{sharedImageDir, pythonImageDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

var (
	pythonImageOnce sync.Once
	pythonImage     testImage
	pythonImageDir  string
	pythonImageErr  error
)

// newPythonImage returns an image of busybox and the host's python3,
// built once per test binary.
func newPythonImage(t testing.TB) testImage {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox on this machine (apt-get install busybox-static): image roots are tested with it")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no host python3 to build a test image from")
	}
	pythonImageOnce.Do(func() {
		if pythonImageDir, pythonImageErr = os.MkdirTemp("", "compute-image-test-"); pythonImageErr != nil {
			return
		}
		ref := writeImage(t, filepath.Join(pythonImageDir, "layout"), v1.Config{Env: []string{"PATH=/usr/bin:/bin"}},
			busyboxLayer(t), pythonLayer(t),
			testLayer(t, directory("etc"), regular("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"), regular("etc/group", "root:x:0:\nnogroup:x:65534:\n")))
		st, err := imagestore.Open(filepath.Join(pythonImageDir, "store"))
		if err != nil {
			pythonImageErr = err
			return
		}
		// Pulled here, so that what tests and benchmarks time is a
		// cached image.
		if _, err := st.Pull(context.Background(), ref, nil); err != nil {
			pythonImageErr = err
			return
		}
		pythonImage = testImage{ref: ref, store: st}
	})
	if pythonImageErr != nil {
		t.Fatal(pythonImageErr)
	}
	return pythonImage
}

// Code, commands and terminals work in an image root as on the host's.
func TestImageRootCodeAndTerminal(t *testing.T) {
	img := newPythonImage(t)
	p := imageProvider(t, img, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := sb.RunCode(ctx, "import sys, os\nprint(sys.version_info[0], os.getcwd(), open('/etc/hostname').read().strip())", &compute.CodeOptions{Runtime: compute.Python})
	if err != nil || res.Stdout != "3 /workspace sandbox\n" {
		t.Errorf("RunCode = %+v, %v", res, err)
	}
	term, err := sb.Terminal(ctx, nil) // the login shell: busybox sh here
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if _, err := io.WriteString(term, "echo $((6*7)); tty; exit 3\n"); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(term)
	if code, err := term.Wait(); code != 3 || !strings.Contains(string(out), "42") || !strings.Contains(string(out), "/dev/pts/") {
		t.Errorf("terminal: exit %d, %v, output %q", code, err, out)
	}
}

// pythonLayer is a layer with the host's python3 (the binary, the
// standard library without its tests, and the shared libraries they
// load), so that the tests that drive a sandbox through Python run in an
// image root too. It is built from the host's files in the test: no
// download.
func pythonLayer(t testing.TB) v1.Layer {
	t.Helper()
	exe, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Skipf("no host python3 to build a test image from: %v", err)
	}
	ver := filepath.Base(exe) // python3.11
	stdlib := "/usr/lib/" + ver
	files := map[string]string{"/usr/bin/python3": exe, "/etc/ld.so.cache": "/etc/ld.so.cache"}
	libs := map[string]bool{}
	addLibs := func(bin string) {
		out, _ := exec.Command("ldd", bin).Output()
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					libs[f] = true
				}
			}
		}
	}
	addLibs(exe)
	skip := map[string]bool{"test": true, "idlelib": true, "tkinter": true, "ensurepip": true, "lib2to3": true, "turtledemo": true, "__pycache__": true, "pydoc_data": true}
	err = filepath.WalkDir(stdlib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip[d.Name()] {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			files[p] = p
			if strings.HasSuffix(p, ".so") {
				addLibs(p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for l := range libs {
		files[l] = l
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	var entries []tarEntry
	for _, n := range names {
		rel := strings.TrimPrefix(n, "/")
		for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
		b, err := os.ReadFile(files[n])
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(files[n])
		entries = append(entries, tarEntry{name: rel, body: b, mode: int64(fi.Mode().Perm())})
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList) // parents first
	var all []tarEntry
	for _, d := range dirList {
		all = append(all, directory(d))
	}
	return testLayer(t, append(all, entries...)...)
}

// escapeRoot, while set, is the image every sandbox newSandbox and
// newSandboxWith create has as its root (TestImageRootEscapeSuite).
var escapeRoot *testImage

// TestImageRootEscapeSuite runs the escape suite's attacks again with an
// image root (busybox and the host's python3, built here): every
// isolation and hardening guarantee must hold inside an image too.
func TestImageRootEscapeSuite(t *testing.T) {
	img := newPythonImage(t)
	escapeRoot = &img
	defer func() { escapeRoot = nil }()

	// The suite's sandboxes are image roots indeed.
	sb := newSandbox(t, nil)
	if res := shell(t, sb, "test -e /usr/bin/node && echo host; readlink /bin/sh; python3 -c 'print(1+1)'"); res.Stdout != "busybox\n2\n" {
		t.Fatalf("not the test image's root: %q (stderr %q)", res.Stdout, res.Stderr)
	}

	for _, c := range []struct {
		name string
		test func(*testing.T)
	}{
		{"MountAndNamespaces", TestEscapeMountAndNamespaces},
		{"Privileges", TestEscapePrivileges},
		{"KernelSurface", TestEscapeKernelSurface},
		{"Links", TestEscapeLinks},
		{"Disk", TestEscapeDisk},
		{"ForkBomb", TestEscapeForkBomb},
		{"OpenFiles", TestEscapeOpenFiles},
		{"InheritedHostDescriptor", TestAttackInheritedHostDescriptor},
		{"AgentProcessAttributes", TestAttackAgentProcessAttributes},
		{"AgentProcEntries", TestAttackAgentProcEntries},
		{"SpecialFiles", TestAttackSpecialFiles},
		{"SocketFamiliesAndIoctlBits", TestAttackSocketFamiliesAndIoctlBits},
		{"ProcInformationLeaks", TestAttackProcInformationLeaks},
		{"RunsAsUnprivilegedHostUID", TestRunsAsUnprivilegedHostUID},
		{"CannotReadHostFiles", TestCannotReadHostFiles},
		{"CannotWriteHostSystem", TestCannotWriteHostSystem},
		{"NoNetworkByDefault", TestNoNetworkByDefault},
		{"SeesOnlyItsOwnProcesses", TestSeesOnlyItsOwnProcesses},
		{"NoInheritedDescriptors", TestNoInheritedDescriptors},
		{"SandboxesDoNotShareFiles", TestSandboxesDoNotShareFiles},
		{"TimeoutKillsDescendants", TestTimeoutKillsDescendants},
	} {
		t.Run(c.name, c.test)
	}
}

// Image sandboxes have reserves of their own: sandboxes with the last
// image's root, and sandboxes without a root; neither takes the host-root
// spares, and neither keeps the image from being removed.
func TestImageReserves(t *testing.T) {
	dir := t.TempDir()
	ref := writeImage(t, filepath.Join(dir, "layout"), v1.Config{}, busyboxLayer(t), testLayer(t, regular("marker", "one\n")))
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	p := imageProvider(t, testImage{ref: ref, store: st}, local.Options{})
	c := compute.New(compute.Config{Provider: p})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	check := func(sb *compute.Sandbox, want string) {
		t.Helper()
		if res := shell(t, sb, "cat /marker; test -e /usr && echo host; true"); res.Stdout != want {
			t.Errorf("cat /marker = %q, want %q", res.Stdout, want)
		}
	}
	if err := p.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if host, bare, img := p.Reserves(); host != 1 || bare != 0 || img != 0 {
		t.Fatalf("reserves before any image: %d %d %d, want 1 0 0", host, bare, img)
	}
	sb, err := c.Create(ctx, &compute.CreateOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	check(sb, "one\n")
	sb.Destroy(ctx)
	if err := p.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if host, bare, img := p.Reserves(); host != 1 || bare != 1 || img != 1 {
		t.Fatalf("reserves after an image Create: %d %d %d, want 1 1 1", host, bare, img)
	}
	// From the image reserve.
	sb, err = c.Create(ctx, &compute.CreateOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	if _, bare, img := p.Reserves(); bare != 1 || img != 0 {
		t.Errorf("the Create did not take the image spare: bare %d, image %d", bare, img)
	}
	check(sb, "one\n")
	shell(t, sb, "echo mine > /marker")
	sb.Destroy(ctx)
	if err := p.Warm(ctx); err != nil {
		t.Fatal(err)
	}

	// The reserve holds no image in use: the image can be removed, and
	// pulled again with other contents under the same reference; the
	// spare built from the removed layers is not handed out.
	if err := st.Remove(ctx, ref); err != nil {
		t.Fatalf("Remove with only spares of the image: %v", err)
	}
	ref = writeImage(t, filepath.Join(dir, "layout2"), v1.Config{}, busyboxLayer(t), testLayer(t, regular("marker", "one\n")))
	sb, err = c.Create(ctx, &compute.CreateOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	check(sb, "one\n")
	// The host-root reserve was not touched by any of it.
	if host, _, _ := p.Reserves(); host != 1 {
		t.Errorf("host-root reserve: %d, want 1", host)
	}
	hostSB, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := shell(t, hostSB, "test -x /usr/bin/env && echo host"); res.Stdout != "host\n" {
		t.Errorf("a Create without an image got %q, want the host's system", res.Stdout)
	}
}
