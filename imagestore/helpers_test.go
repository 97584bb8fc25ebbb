package imagestore

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is a tar entry a test layer holds.
type entry struct {
	name     string
	typ      byte // tar.TypeReg when 0
	body     string
	link     string
	mode     int64
	uid, gid int
	major    int64
}

func file(name, body string) entry { return entry{name: name, body: body, mode: 0o644} }
func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}
func hardlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeLink, link: to, mode: 0o644}
}
func whiteout(dir, name string) entry { return file(strings.TrimPrefix(dir+"/.wh."+name, "/"), "") }

// tarOf builds a layer's tar.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link, Uid: e.uid, Gid: e.gid,
			ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Format: tar.FormatPAX, Devmajor: e.major}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerOf is a gzip-compressed layer of entries.
func layerOf(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := tarOf(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf is an image for platform (this machine's when empty) with
// these layers, bottom first, and a config.
func imageOf(t testing.TB, platform string, layers ...v1.Layer) v1.Image {
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
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if platform != "" {
		pp, err := v1.ParsePlatform(platform)
		if err != nil {
			t.Fatal(err)
		}
		p = *pp
	}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Env = []string{"PATH=/usr/bin:/bin", "GREETING=hello"}
	cf.Config.WorkingDir = "/app"
	cf.Config.User = "1000:1000"
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry is an in-process registry that counts blob downloads.
type testRegistry struct {
	*httptest.Server
	host      string
	blobGets  atomic.Int64
	layerGets atomic.Int64 // blob GETs of layers (not configs)
	layers    sync.Map     // digests of pushed layers
	manifests atomic.Int64
	// block, when set, holds every layer GET until the request ends.
	block atomic.Bool
	// swap serves other bytes for a blob digest: a registry that lies.
	swap sync.Map
	// delay, when set, is how long every layer GET waits first.
	delay atomic.Int64
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := registry.New(registry.Logger(discardLogger()))
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/blobs/") && req.Method == http.MethodGet {
			r.blobGets.Add(1)
			if _, ok := r.layers.Load(req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]); ok {
				r.layerGets.Add(1)
				time.Sleep(time.Duration(r.delay.Load()))
			}
			if b, ok := r.swap.Load(req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]); ok {
				w.Write(b.([]byte))
				return
			}
			if _, layer := r.layers.Load(req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]); layer && r.block.Load() {
				<-req.Context().Done()
				return
			}
		}
		if strings.Contains(req.URL.Path, "/manifests/") && req.Method == http.MethodGet {
			r.manifests.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	r.host = strings.TrimPrefix(r.URL, "http://")
	return r
}

// push puts img (a v1.Image or v1.ImageIndex) at repo:tag and returns the
// reference.
func (r *testRegistry) push(t testing.TB, repoTag string, img any) string {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	switch v := img.(type) {
	case v1.Image:
		r.noteLayers(t, v)
		err = remote.Write(ref, v)
	case v1.ImageIndex:
		m, _ := v.IndexManifest()
		for _, d := range m.Manifests {
			im, _ := v.Image(d.Digest)
			r.noteLayers(t, im)
		}
		err = remote.WriteIndex(ref, v)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.blobGets.Store(0)
	r.layerGets.Store(0)
	r.manifests.Store(0)
	return ref.String()
}

func (r *testRegistry) noteLayers(t testing.TB, img v1.Image) {
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		r.layers.Store(l.Digest.String(), true)
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

type ioReadCloser = io.ReadCloser

func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

type nameTag = name.Tag

func newTag(s string) (name.Tag, error) { return name.NewTag(s) }
