package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// source is a parsed image reference.
type source struct {
	kind   string // "registry", "oci", "docker-archive"
	key    string // canonical form: the store's name for it
	ref    name.Reference
	digest string // a registry reference's digest, when it names one
	path   string // oci: the layout directory; docker-archive: the file
	tag    string // oci: the ref.name annotation to pick, if any
}

// parseRef parses an image reference as Pull takes it.
func parseRef(s string) (*source, error) {
	switch {
	case s == "":
		return nil, errors.New("imagestore: empty image reference")
	case strings.HasPrefix(s, "oci:"):
		rest := strings.TrimPrefix(s, "oci:")
		dir, tag := rest, ""
		// DIR:TAG, unless DIR itself (with its colon) is the layout.
		if i := strings.LastIndexByte(rest, ':'); i > 0 && !strings.Contains(rest[i+1:], "/") {
			if _, err := os.Stat(filepath.Join(rest, "index.json")); err != nil {
				dir, tag = rest[:i], rest[i+1:]
			}
		}
		if dir == "" {
			return nil, fmt.Errorf("imagestore: %q names no directory: write oci:DIR or oci:DIR:TAG", s)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		key := "oci:" + abs
		if tag != "" {
			key += ":" + tag
		}
		return &source{kind: "oci", key: key, path: abs, tag: tag}, nil
	case strings.HasPrefix(s, "docker-archive:"):
		file := strings.TrimPrefix(s, "docker-archive:")
		if file == "" {
			return nil, fmt.Errorf("imagestore: %q names no file: write docker-archive:FILE (from docker save)", s)
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, err
		}
		return &source{kind: "docker-archive", key: "docker-archive:" + abs, path: abs}, nil
	}
	if strings.Contains(s, "://") {
		return nil, fmt.Errorf("imagestore: %q is a URL; an image reference is REGISTRY/NAME:TAG (e.g. ghcr.io/org/img:tag)", s)
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %q is not an image reference (NAME[:TAG|@DIGEST], oci:DIR[:TAG] or docker-archive:FILE): %w", s, err)
	}
	if isLoopback(ref.Context().RegistryStr()) {
		// Plain HTTP for a registry on this machine only (tests, a local
		// registry); every other registry speaks TLS.
		if ref, err = name.ParseReference(s, name.Insecure); err != nil {
			return nil, err
		}
	}
	src := &source{kind: "registry", ref: ref, key: shortName(ref.Name())}
	if d, ok := ref.(name.Digest); ok {
		src.digest = d.DigestStr()
	}
	return src, nil
}

// shortName drops Docker Hub's implied parts, as docker does when it
// prints a name.
func shortName(s string) string {
	if r, ok := strings.CutPrefix(s, "index.docker.io/library/"); ok {
		return r
	}
	if r, ok := strings.CutPrefix(s, "index.docker.io/"); ok {
		return r
	}
	return s
}

// isLoopback says whether host (with an optional port) is this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHTTPOnly refuses plain HTTP to anything but this machine,
// including a registry's redirect and go-containerregistry's own HTTP
// fallback for private addresses.
type loopbackHTTPOnly struct{ next http.RoundTripper }

func (t loopbackHTTPOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Host) {
		return nil, fmt.Errorf("imagestore: refusing plain HTTP to %s: only registries on this machine may be reached without TLS", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

func defaultPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// resolved is an image picked from its source, before its blobs are read.
type resolved struct {
	img      v1.Image
	resolved string // the digest the reference itself resolved to (index or manifest)
	digest   string // manifest digest ("" for docker-archive)
	id       string // config digest
	platform string
	layers   func(cfg *v1.ConfigFile) ([]layerSource, error)
}

func (src *source) resolve(ctx context.Context, want v1.Platform, o *PullOptions) (*resolved, error) {
	switch src.kind {
	case "registry":
		return src.resolveRegistry(ctx, want, o)
	case "oci":
		return src.resolveLayout(want)
	default:
		return src.resolveArchive(want)
	}
}

func (src *source) resolveRegistry(ctx context.Context, want v1.Platform, o *PullOptions) (*resolved, error) {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	if o.Anonymous {
		kc = anonymousKeychain{}
	}
	tr := o.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(loopbackHTTPOnly{tr}),
		remote.WithPlatform(want),
		remote.WithUserAgent("compute-imagestore"),
	}
	desc, err := remote.Get(src.ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
	}
	var img v1.Image
	var digest string
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
		}
		img, digest, err = pickPlatform(src.key, idx, want)
		if err != nil {
			return nil, err
		}
	} else {
		if img, err = desc.Image(); err != nil {
			return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
		}
		digest = desc.Digest.String()
	}
	return manifestImage(src.key, img, desc.Digest.String(), digest, want)
}

func (src *source) resolveLayout(want v1.Platform) (*resolved, error) {
	idx, err := layout.ImageIndexFromPath(src.path)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s is not an OCI layout (a directory with index.json and blobs/): %w", src.path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
	}
	var chosen *v1.Descriptor
	var tags []string
	for i, d := range im.Manifests {
		t := d.Annotations["org.opencontainers.image.ref.name"]
		if t != "" {
			tags = append(tags, t)
		}
		if src.tag != "" && (t == src.tag || strings.HasSuffix(t, ":"+src.tag)) {
			chosen = &im.Manifests[i]
			break
		}
	}
	switch {
	case chosen != nil:
	case src.tag != "":
		return nil, fmt.Errorf("imagestore: the OCI layout %s has no image tagged %q; it has %s", src.path, src.tag, listOr(tags, "no tags"))
	case len(im.Manifests) == 1:
		chosen = &im.Manifests[0]
	default:
		return nil, fmt.Errorf("imagestore: the OCI layout %s holds %d images: name one as oci:%s:TAG (tags: %s)", src.path, len(im.Manifests), src.path, listOr(tags, "none"))
	}
	var img v1.Image
	digest := chosen.Digest.String()
	if chosen.MediaType.IsIndex() {
		child, err := idx.ImageIndex(chosen.Digest)
		if err != nil {
			return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
		}
		if img, digest, err = pickPlatform(src.key, child, want); err != nil {
			return nil, err
		}
	} else if img, err = idx.Image(chosen.Digest); err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
	}
	return manifestImage(src.key, img, chosen.Digest.String(), digest, want)
}

func listOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ", ")
}

// pickPlatform picks want's image from an index, or says which platforms
// the index has.
func pickPlatform(key string, idx v1.ImageIndex, want v1.Platform) (v1.Image, string, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, "", fmt.Errorf("imagestore: %s: %w", key, err)
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue // attestations and the like
		}
		have = append(have, platformString(*d.Platform))
		if !d.Platform.Satisfies(want) {
			continue
		}
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, "", fmt.Errorf("imagestore: %s: %w", key, err)
			}
			return pickPlatform(key, child, want)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, "", fmt.Errorf("imagestore: %s: %w", key, err)
		}
		return img, d.Digest.String(), nil
	}
	sort.Strings(have)
	return nil, "", fmt.Errorf("imagestore: %s has no image for %s; it has %s (choose one with PullOptions.Platform or --platform)",
		key, platformString(want), listOr(have, "no platforms at all"))
}

// manifestImage is an image with a manifest (registry, OCI layout): its
// config digest is known without fetching the config.
func manifestImage(key string, img v1.Image, resolvedDigest, digest string, want v1.Platform) (*resolved, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", key, err)
	}
	if m.Config.MediaType.IsSchema1() || m.Config.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("imagestore: %s uses an unsupported manifest (schema 1 or a non-sha256 digest)", key)
	}
	r := &resolved{img: img, resolved: resolvedDigest, digest: digest, id: m.Config.Digest.String(), platform: platformString(want)}
	r.layers = func(cfg *v1.ConfigFile) ([]layerSource, error) {
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			return nil, fmt.Errorf("imagestore: %s: the manifest lists %d layers but the config %d diff_ids", key, len(m.Layers), len(cfg.RootFS.DiffIDs))
		}
		out := make([]layerSource, len(m.Layers))
		for i, d := range m.Layers {
			if d.Digest.Algorithm != "sha256" || cfg.RootFS.DiffIDs[i].Algorithm != "sha256" {
				return nil, fmt.Errorf("imagestore: %s: layer %d has a non-sha256 digest", key, i)
			}
			layer, err := img.LayerByDigest(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("imagestore: %s: layer %s: %w", key, d.Digest, err)
			}
			out[i] = layerSource{open: layer.Compressed, compressed: true, digest: d.Digest.String(), size: d.Size, diffID: cfg.RootFS.DiffIDs[i].String()}
		}
		return out, nil
	}
	return r, nil
}

func (src *source) resolveArchive(want v1.Platform) (*resolved, error) {
	img, err := tarball.ImageFromPath(src.path, nil)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s is not a docker save archive of one image: %w", src.path, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
	}
	r := &resolved{img: img, id: id.String(), platform: platformString(want)}
	r.layers = func(cfg *v1.ConfigFile) ([]layerSource, error) {
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("imagestore: %s: %w", src.key, err)
		}
		out := make([]layerSource, len(layers))
		for i, l := range layers {
			if i >= len(cfg.RootFS.DiffIDs) {
				return nil, fmt.Errorf("imagestore: %s: more layers than the config's diff_ids", src.key)
			}
			out[i] = layerSource{open: uncompressed(l), diffID: cfg.RootFS.DiffIDs[i].String()}
		}
		return out, nil
	}
	return r, nil
}

func uncompressed(l v1.Layer) func() (io.ReadCloser, error) { return l.Uncompressed }

// anonymousKeychain gives no credentials for any registry.
type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// Registry returns the registry host (with its port, if any) that an
// image reference as Pull takes it names ("index.docker.io" for
// "python:3.12"), or "" for a reference to this machine's files
// ("oci:DIR", "docker-archive:FILE"); an error if ref is not a
// reference.
func Registry(ref string) (string, error) {
	src, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	if src.kind != "registry" {
		return "", nil
	}
	return src.ref.Context().RegistryStr(), nil
}
