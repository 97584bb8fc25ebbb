//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local"
)

func TestImageSteps(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{
		"RUN echo built > /etc/built",
		"ENV GREETING=hi",
		"ENV FROM_IMAGE no",
		"RUN echo $GREETING > /etc/greeting",
		"WORKDIR /opt",
		"WORKDIR data",
		"RUN pwd > /etc/pwd",
		"WORKDIR /srv",
	}})
	for _, c := range []struct{ script, want string }{
		{"cat /etc/built /etc/greeting /etc/pwd", "built\nhi\n/opt/data\n"},
		{"echo $GREETING $FROM_IMAGE $PATH", "hi no /bin:/image/bin\n"},
		{"pwd; test -d /opt/data && echo made", "/srv\nmade\n"},
	} {
		if res := shell(t, sb, c.script); res.Stdout != c.want || res.ExitCode != 0 {
			t.Errorf("%s\n= %q (exit %d, stderr %q)\nwant %q", c.script, res.Stdout, res.ExitCode, res.Stderr, c.want)
		}
	}

	// Another sandbox of the same base sees none of it.
	plain := createIn(t, p, &compute.CreateOptions{Image: img.ref})
	if res := shell(t, plain, "test -e /etc/built && echo leaked; echo ${GREETING:-none}; pwd"); res.Stdout != "none\n/srv/app\n" {
		t.Errorf("a sandbox without steps sees %q", res.Stdout)
	}
}

func TestImageStepFails(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{
		"RUN true",
		"RUN echo about to fail; echo really >&2; exit 3",
	}})
	if err == nil {
		sb.Destroy(ctx)
		t.Fatal("Create with a failing step succeeded")
	}
	for _, want := range []string{"step 2", "code 3", "about to fail", "really"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if list, _ := p.List(ctx); len(list) != 0 {
		t.Errorf("%d sandboxes left after a failed Create", len(list))
	}
}

func TestImageStepsNeedImage(t *testing.T) {
	img := newTestImage(t)
	p := imageProvider(t, img, local.Options{})
	_, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), &compute.CreateOptions{ImageSteps: []string{"RUN true"}})
	if !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("steps without an image: %v, want ErrInvalid", err)
	}
}

// freshStore is the shared test image in a store of its own, so that
// what a test builds is its alone.
func freshStore(t *testing.T) testImage {
	img := newTestImage(t)
	dir := t.TempDir()
	// Layers keep their images' modes (read-only directories among
	// them), which an unprivileged TempDir cleanup could not remove.
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
	st, err := imagestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testImage{ref: img.ref, store: st}
}

// A step runs once: its result is stored as a layer and reused by later
// Creates, by another provider sharing the cache directory, and by a
// build that adds a step. Each run of the step writes a new random id,
// so a second run would show.
func TestImageStepsCached(t *testing.T) {
	img := newTestImage(t)
	cache := t.TempDir()
	t.Setenv("COMPUTE_CACHE_DIR", cache)
	// The step calls this server (build steps have the host's network),
	// which counts its runs.
	var runs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		io.WriteString(w, "ran\n")
	}))
	defer srv.Close()
	steps := []string{
		"RUN cat /proc/sys/kernel/random/uuid > /etc/build-id; wget -q -O - " + srv.URL + "/ >> /etc/runs",
		"ENV BUILT=yes",
	}
	newProvider := func() *local.Provider {
		p, err := local.New(local.Options{}) // the store at $COMPUTE_CACHE_DIR
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	p1, p2 := newProvider(), newProvider()
	read := func(sb *compute.Sandbox) string {
		t.Helper()
		res := shell(t, sb, "cat /etc/build-id /etc/runs; echo $BUILT")
		if res.ExitCode != 0 {
			t.Fatalf("reading the built files: exit %d, %s", res.ExitCode, res.Stderr)
		}
		return res.Stdout
	}
	sb1 := createIn(t, p1, &compute.CreateOptions{Image: img.ref, ImageSteps: steps})
	first := read(sb1)
	if !strings.HasSuffix(first, "\nran\nyes\n") {
		t.Fatalf("built image holds %q", first)
	}
	// What a sandbox writes stays its own.
	shell(t, sb1, "echo changed > /etc/build-id")
	sb2 := createIn(t, p1, &compute.CreateOptions{Image: img.ref, ImageSteps: steps})
	sb3 := createIn(t, p2, &compute.CreateOptions{Image: img.ref, ImageSteps: steps})
	for name, sb := range map[string]*compute.Sandbox{"same provider": sb2, "another provider": sb3} {
		if got := read(sb); got != first {
			t.Errorf("%s: %q, want the first build's %q (the step ran again?)", name, got, first)
		}
	}
	more := append(slices.Clone(steps), "RUN echo second > /etc/second")
	sb4 := createIn(t, p2, &compute.CreateOptions{Image: img.ref, ImageSteps: more})
	if got := read(sb4); got != first {
		t.Errorf("a build with one more step: %q, want the first step's result %q reused", got, first)
	}
	if res := shell(t, sb4, "cat /etc/second"); res.Stdout != "second\n" {
		t.Errorf("the added step: %q", res.Stdout)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the step ran %d times for four Creates on two providers, want once", n)
	}

	// The store lists the built images, with their steps.
	st, err := imagestore.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	for _, im := range list {
		if im.Build != nil {
			built++
			if im.Build.Base != img.ref || len(im.Build.Steps) == 0 || im.Build.Steps[0] != "RUN "+strings.TrimPrefix(steps[0], "RUN ") {
				t.Errorf("built image %s: %+v", im.ID, im.Build)
			}
		}
	}
	if built != 3 { // after step 1, after step 2 (ENV, the last), after the added step
		t.Errorf("%d built images in the store, want 3", built)
	}

	// Prune keeps the images in use and removes the others, but not the
	// layers those use: the first step's record goes, its layer stays
	// (sb4's image has it), and the step need not run again.
	if _, err := st.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	sbAfter := createIn(t, p1, &compute.CreateOptions{Image: img.ref, ImageSteps: steps[:1]})
	if got := shell(t, sbAfter, "cat /etc/build-id").Stdout; !strings.HasPrefix(first, got) || runs.Load() != 1 {
		t.Errorf("after a prune that kept the step's layer: %q, %d runs; want the first build's, run once", got, runs.Load())
	}
	sbAfter.Destroy(context.Background())
	for _, sb := range []*compute.Sandbox{sb1, sb2, sb3, sb4} {
		sb.Destroy(context.Background())
	}
	res, err := st.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Images == 0 || res.Layers == 0 {
		t.Errorf("prune after the sandboxes ended removed %+v, want the built images and layers", res)
	}
	sb5 := createIn(t, p1, &compute.CreateOptions{Image: img.ref, ImageSteps: steps})
	if got := read(sb5); got == first || runs.Load() != 2 {
		t.Errorf("after prune, the build was not run again: %q, %d runs", got, runs.Load())
	}
}

// A step's deletions (whiteouts) and replaced directories (opaque) are
// stored in the store's own form and honoured in sandboxes of the built
// image.
func TestImageStepsWhiteouts(t *testing.T) {
	img := freshStore(t)
	p := imageProvider(t, img, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{
		"RUN rm /etc/marker && rm -r /opq && mkdir /opq && echo mine > /opq/only",
	}})
	res := shell(t, sb, "test -e /etc/marker && echo marker; ls /opq; cat /etc/upper")
	if res.Stdout != "only\nfrom the upper layer\n" {
		t.Errorf("built image: %q, want /etc/marker gone and /opq holding only its new file", res.Stdout)
	}
	list, err := img.store.List()
	if err != nil {
		t.Fatal(err)
	}
	var top string
	for _, im := range list {
		if im.Build != nil {
			top = im.Layers[len(im.Layers)-1].Dir
		}
	}
	if top == "" {
		t.Fatal("no built image in the store")
	}
	xattr := func(p, name string) string {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(top, p), name, buf)
		if err != nil {
			return "none"
		}
		return string(buf[:n])
	}
	for _, c := range []struct{ path, attr, want string }{
		{"etc/marker", "user.overlay.whiteout", "y"},
		{"etc", "user.overlay.opaque", "x"},
		{"opq", "user.overlay.opaque", "y"},
	} {
		if got := xattr(c.path, c.attr); got != c.want {
			t.Errorf("layer %s: %s = %q, want %q", c.path, c.attr, got, c.want)
		}
	}
	for _, f := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(top, f)); err == nil {
			t.Errorf("the sandbox's generated %s went into the layer", f)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(top, "opq/only"), &st); err != nil || st.Uid != uint32(os.Geteuid()) {
		t.Errorf("layer file owner: %v, uid %d, want %d", err, st.Uid, os.Geteuid())
	}
}

// A failing step says which, with its exit code and output, and leaves
// nothing in the store.
func TestImageStepFailsCachesNothing(t *testing.T) {
	img := freshStore(t)
	p := imageProvider(t, img, local.Options{})
	_, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), &compute.CreateOptions{Image: img.ref, ImageSteps: []string{
		"RUN echo partial > /etc/partial; echo oops >&2; exit 7",
	}})
	var se *local.StepError
	if !errors.As(err, &se) || se.Step != 1 || se.ExitCode != 7 || !strings.Contains(se.Output, "oops") {
		t.Fatalf("error %v (%#v), want a StepError for step 1, code 7, with its output", err, se)
	}
	list, _ := img.store.List()
	for _, im := range list {
		if im.Build != nil {
			t.Errorf("a failed step left built image %s", im.ID)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(img.store.Dir(), "tmp")); len(tmp) > 0 {
		t.Errorf("a failed step left %d entries in the store's tmp", len(tmp))
	}
	layers, _ := os.ReadDir(filepath.Join(img.store.Dir(), "layers"))
	for _, e := range layers {
		if !isPulledLayer(img, e.Name()) {
			t.Errorf("a failed step left layer %s", e.Name())
		}
	}
}

// isPulledLayer says whether hex names a layer of the base image.
func isPulledLayer(img testImage, hex string) bool {
	im, err := img.store.Get(img.ref)
	if err != nil {
		return false
	}
	for _, l := range im.Layers {
		if strings.TrimPrefix(l.DiffID, "sha256:") == hex {
			return true
		}
	}
	return false
}

// COPY puts the context's files in the image, with their modes; the
// cache follows their content.
func TestImageStepsCopy(t *testing.T) {
	img := freshStore(t)
	p := imageProvider(t, img, local.Options{})
	ctx := fstest.MapFS{
		"run.sh":         {Data: []byte("#!/bin/sh\necho run $1\n"), Mode: 0o755},
		"data/a.txt":     {Data: []byte("a\n"), Mode: 0o600},
		"data/sub/b.txt": {Data: []byte("b\n"), Mode: 0o644},
		"notes.md":       {Data: []byte("n\n"), Mode: 0o644},
	}
	steps := []string{
		"WORKDIR /app",
		"COPY run.sh ./",
		"COPY data /app/data",
		"COPY *.md /docs/",
		"RUN ./run.sh built > /app/out",
	}
	sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, ImageSteps: steps, ImageContext: ctx})
	res := shell(t, sb, "pwd; cat out data/a.txt data/sub/b.txt /docs/notes.md; stat -c '%a %n' run.sh data/a.txt data/sub/b.txt")
	want := "/app\nrun built\na\nb\nn\n755 run.sh\n600 data/a.txt\n644 data/sub/b.txt\n"
	if res.Stdout != want {
		t.Errorf("copied files:\n%q (stderr %q)\nwant\n%q", res.Stdout, res.Stderr, want)
	}
	ctx["run.sh"] = &fstest.MapFile{Data: []byte("#!/bin/sh\necho changed $1\n"), Mode: 0o755}
	sb2 := createIn(t, p, &compute.CreateOptions{Image: img.ref, ImageSteps: steps, ImageContext: ctx})
	if res := shell(t, sb2, "cat out"); res.Stdout != "changed built\n" {
		t.Errorf("after the copied file changed: %q, want the step built again", res.Stdout)
	}
	_, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), &compute.CreateOptions{Image: img.ref, ImageSteps: []string{"COPY missing /x"}, ImageContext: ctx})
	if err == nil || !strings.Contains(err.Error(), "not in the build context") {
		t.Errorf("COPY of a missing file: %v", err)
	}
}

// Build steps have the host's network unless the provider says none;
// the sandbox made from the built image has its own.
func TestImageStepsNetwork(t *testing.T) {
	const step = "RUN grep -c : /proc/net/dev > /etc/interfaces"
	for _, c := range []struct {
		name    string
		network driver.Network
		many    bool
	}{
		{"default", "", true},
		{"none", driver.NetworkNone, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := freshStore(t)
			p := imageProvider(t, img, local.Options{ImageBuildNetwork: c.network})
			sb := createIn(t, p, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{step}})
			res := shell(t, sb, "cat /etc/interfaces; grep -c : /proc/net/dev")
			lines := strings.Fields(res.Stdout)
			if len(lines) != 2 {
				t.Fatalf("%q", res.Stdout)
			}
			if got := lines[0] != "1"; got != c.many {
				t.Errorf("build step saw %s interfaces; want host's network: %v", lines[0], c.many)
			}
			if lines[1] != "1" {
				t.Errorf("the sandbox (no network asked) sees %s interfaces, want its loopback only", lines[1])
			}
		})
	}
}

// BenchmarkImageSteps: Create + first command + Destroy of an image with
// one RUN step, built each time ("build": the step's text differs per
// iteration) or found in the cache ("cached"), beside the same image
// without steps ("none").
func BenchmarkImageSteps(b *testing.B) {
	img := newTestImage(b)
	st, err := imagestore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	img.store = st
	p := imageProvider(b, img, local.Options{})
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	run := func(b *testing.B, steps func(i int) []string) {
		for i := 0; b.Loop(); i++ {
			sb, err := c.Create(ctx, &compute.CreateOptions{Image: img.ref, ImageSteps: steps(i)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sb.Run(ctx, []string{"true"}, nil); err != nil {
				b.Fatal(err)
			}
			sb.Destroy(ctx)
		}
	}
	b.Run("none", func(b *testing.B) { run(b, func(int) []string { return nil }) })
	b.Run("cached", func(b *testing.B) {
		run(b, func(int) []string { return []string{"RUN echo built > /etc/built"} })
	})
	b.Run("build", func(b *testing.B) {
		n := time.Now().UnixNano()
		run(b, func(i int) []string { return []string{fmt.Sprintf("RUN echo built %d-%d > /etc/built", n, i)} })
	})
}

// Creates that build the same step at the same time, in two providers
// sharing the store, run it once: the others wait for it and take its
// result.
func TestImageStepsConcurrent(t *testing.T) {
	img := freshStore(t)
	var runs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		io.WriteString(w, "ran\n")
	}))
	defer srv.Close()
	steps := []string{"RUN wget -q -O /etc/runs " + srv.URL + "/ && sleep 0.2"}
	p1, p2 := imageProvider(t, img, local.Options{}), imageProvider(t, img, local.Options{})
	errs := make(chan error, 4)
	for _, p := range []*local.Provider{p1, p2, p1, p2} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Image: img.ref, ImageSteps: steps})
			if err == nil {
				var res *compute.Result
				if res, err = sb.RunShell(ctx, "cat /etc/runs", nil); err == nil && res.Stdout != "ran\n" {
					err = fmt.Errorf("the built file holds %q", res.Stdout)
				}
				sb.Destroy(ctx)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the step ran %d times for four Creates at once, want once", n)
	}
}

// A build step writes into its sandbox's own disk: past DiskSize its
// writes fail inside, and a sparse file that would copy to more than
// DiskSize is refused; neither leaves anything in the store.
func TestImageStepsDiskBound(t *testing.T) {
	img := freshStore(t)
	p := imageProvider(t, img, local.Options{DiskSize: 16 << 20})
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	_, err := c.Create(ctx, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{"RUN dd if=/dev/zero of=/big bs=1M count=64"}})
	var se *local.StepError
	if !errors.As(err, &se) || !strings.Contains(se.Output, "space") {
		t.Errorf("a step writing past DiskSize: %v, want its failure (no space left)", err)
	}
	_, err = c.Create(ctx, &compute.CreateOptions{Image: img.ref, ImageSteps: []string{"RUN truncate -s 1G /sparse"}})
	if !errors.Is(err, imagestore.ErrTooLarge) {
		t.Errorf("a step leaving a sparse file larger than DiskSize: %v, want ErrTooLarge", err)
	}
	list, _ := img.store.List()
	for _, im := range list {
		if im.Build != nil {
			t.Errorf("a failed build left image %s", im.ID)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(img.store.Dir(), "tmp")); len(tmp) > 0 {
		t.Errorf("a failed build left %d entries in the store's tmp", len(tmp))
	}
}
