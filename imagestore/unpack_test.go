//go:build linux

package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func bigLimits() *limits { return newLimits(DefaultMaxSize, DefaultMaxEntries) }

// unpackInto unpacks a tar into a fresh root under a directory that
// also holds "outside", a directory a hostile layer must not reach.
func unpackInto(t *testing.T, lim *limits, entries ...entry) (root, outside string, u *unpacked, err error) {
	t.Helper()
	base := t.TempDir()
	outside = filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(base, "layer", "root")
	os.MkdirAll(filepath.Dir(root), 0o755)
	u, err = unpackTar(bytes.NewReader(tarOf(t, entries...)), root, lim)
	t.Cleanup(func() { removeAll(base) })
	return root, outside, u, err
}

func assertOutsideUntouched(t *testing.T, outside string) {
	t.Helper()
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 || ents[0].Name() != "secret" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("outside directory changed: %v", names)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host secret" {
		t.Errorf("outside/secret = %q", b)
	}
}

func TestUnpackHostile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries func(outside string) []entry
		wantErr error // nil: unpacking succeeds (the entry is neutralised)
		check   func(t *testing.T, root string, u *unpacked)
	}{
		{
			name:    "dotdot path",
			entries: func(string) []entry { return []entry{file("../../outside/pwned", "x")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "dotdot in the middle",
			entries: func(string) []entry { return []entry{dir("a"), file("a/../../../outside/pwned", "x")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "absolute path lands in the layer",
			entries: func(outside string) []entry { return []entry{file(outside+"/pwned", "x")} },
			check: func(t *testing.T, root string, _ *unpacked) {
				found := false
				filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
					if err == nil && info.Name() == "pwned" {
						found = true
					}
					return nil
				})
				if !found {
					t.Error("the absolute entry is not inside the layer")
				}
			},
		},
		{
			name: "absolute symlink then a write through it",
			entries: func(outside string) []entry {
				return []entry{symlink("evil", outside), file("evil/pwned", "x")}
			},
			// The link resolves inside the layer, where outside's path
			// does not exist: a dangling link as a directory.
			wantErr: ErrHostileLayer,
		},
		{
			name: "absolute symlink to an existing in-layer dir",
			entries: func(outside string) []entry {
				return []entry{dir("etc"), symlink("evil", "/etc"), file("evil/pwned", "x")}
			},
			check: func(t *testing.T, root string, _ *unpacked) {
				if b, err := os.ReadFile(filepath.Join(root, "etc", "pwned")); err != nil || string(b) != "x" {
					t.Errorf("etc/pwned in the layer: %q, %v", b, err)
				}
			},
		},
		{
			name: "relative symlink climbing out",
			entries: func(string) []entry {
				return []entry{symlink("up", "../../../../../../../../.."), file("up/pwned", "x"), file("up/outside/secret", "overwritten")}
			},
			check: func(t *testing.T, root string, _ *unpacked) {
				if _, err := os.Stat(filepath.Join(root, "pwned")); err != nil {
					t.Errorf("up/pwned should land at the layer root: %v", err)
				}
			},
		},
		{
			name:    "hardlink to an absolute path outside",
			entries: func(outside string) []entry { return []entry{hardlink("stolen", outside+"/secret")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "hardlink climbing out",
			entries: func(string) []entry { return []entry{hardlink("stolen", "../../outside/secret")} },
			wantErr: ErrHostileLayer,
		},
		{
			name: "hardlink through a symlink to outside",
			entries: func(outside string) []entry {
				return []entry{symlink("o", outside), hardlink("stolen", "o/secret")}
			},
			wantErr: ErrHostileLayer,
		},
		{
			name:    "hardlink to a not yet seen target",
			entries: func(string) []entry { return []entry{hardlink("early", "later"), file("later", "x")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "hardlink to a directory",
			entries: func(string) []entry { return []entry{dir("d"), hardlink("dl", "d")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "hardlink to a seen file works",
			entries: func(string) []entry { return []entry{file("a", "same"), hardlink("b", "a")} },
			check: func(t *testing.T, root string, _ *unpacked) {
				var sa, sb unix.Stat_t
				unix.Lstat(filepath.Join(root, "a"), &sa)
				unix.Lstat(filepath.Join(root, "b"), &sb)
				if sa.Ino != sb.Ino || sa.Ino == 0 {
					t.Errorf("b is not a hardlink of a")
				}
			},
		},
		{
			name: "device nodes skipped with a note",
			entries: func(string) []entry {
				return []entry{{name: "dev/sda", typ: tar.TypeBlock, major: 8, mode: 0o666}, {name: "dev/mem", typ: tar.TypeChar, major: 1, mode: 0o666}, file("ok", "x")}
			},
			check: func(t *testing.T, root string, u *unpacked) {
				for _, n := range []string{"dev/sda", "dev/mem"} {
					if _, err := os.Lstat(filepath.Join(root, n)); err == nil {
						t.Errorf("%s was created", n)
					}
				}
				if len(u.notes) != 2 || !strings.Contains(u.notes[0], "device") {
					t.Errorf("notes = %q, want two about devices", u.notes)
				}
			},
		},
		{
			name: "setuid and setgid cleared",
			entries: func(string) []entry {
				return []entry{{name: "su", body: "#!", mode: 0o4755}, {name: "sg", body: "#!", mode: 0o2755}, {name: "tmp", typ: tar.TypeDir, mode: 0o1777}}
			},
			check: func(t *testing.T, root string, u *unpacked) {
				for n, want := range map[string]os.FileMode{"su": 0o755, "sg": 0o755, "tmp": os.ModeDir | os.ModeSticky | 0o777} {
					fi, err := os.Lstat(filepath.Join(root, n))
					if err != nil || fi.Mode() != want {
						t.Errorf("%s: mode %v (%v), want %v", n, fi.Mode(), err, want)
					}
				}
			},
		},
		{
			name:    "a directory that is a dangling symlink",
			entries: func(string) []entry { return []entry{symlink("d", "/nowhere"), file("d/x", "x")} },
			wantErr: ErrHostileLayer,
		},
		{
			name:    "whiteout of ..",
			entries: func(string) []entry { return []entry{file("a/.wh...", "")} },
			wantErr: ErrHostileLayer,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root, outside, u, err := unpackAgainst(t, tt.entries)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			assertOutsideUntouched(t, outside)
			if tt.check != nil && err == nil {
				tt.check(t, root, u)
			}
		})
	}
}

// unpackAgainst builds the entries with the outside directory the
// unpack uses.
func unpackAgainst(t *testing.T, entries func(outside string) []entry) (root, outside string, u *unpacked, err error) {
	t.Helper()
	base := t.TempDir()
	outside = filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o644)
	root = filepath.Join(base, "root")
	u, err = unpackTar(bytes.NewReader(tarOf(t, entries(outside)...)), root, bigLimits())
	t.Cleanup(func() { removeAll(root) })
	return root, outside, u, err
}

func TestUnpackLimits(t *testing.T) {
	t.Parallel()
	t.Run("size", func(t *testing.T) {
		big := strings.Repeat("x", 2<<20)
		src := plainSource(t, tarOf(t, file("big", big)))
		_, err := unpackLayer(context.Background(), src, filepath.Join(t.TempDir(), "root"), newLimits(1<<20, 100), nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("endless", func(t *testing.T) {
		// An endless stream of zeros: the tar ends at its first two zero
		// blocks, but the digest needs the whole stream, which never ends.
		src := layerSource{open: func() (io.ReadCloser, error) { return io.NopCloser(zeros{}), nil }, diffID: "sha256:00"}
		_, err := unpackLayer(context.Background(), src, filepath.Join(t.TempDir(), "root"), newLimits(8<<20, 100), nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("entries", func(t *testing.T) {
		var es []entry
		for i := range 50 {
			es = append(es, file(strings.Repeat("f", i+1), ""))
		}
		_, _, _, err := unpackInto(t, newLimits(1<<30, 20), es...)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		src := plainSource(t, tarOf(t, file("a", "x")))
		_, err := unpackLayer(ctx, src, filepath.Join(t.TempDir(), "root"), bigLimits(), nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

func plainSource(t *testing.T, b []byte) layerSource {
	return layerSource{open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, diffID: sha(b)}
}

func TestUnpackDigests(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, file("a", "x"))
	other := tarOf(t, file("a", "y"))
	compressed := func(b []byte) layerSource {
		l := layerOf(t, file("a", string(b)))
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		sz, _ := l.Size()
		return layerSource{open: l.Compressed, compressed: true, digest: d.String(), size: sz, diffID: diff.String()}
	}
	for name, src := range map[string]layerSource{
		"wrong diff_id": {open: plainSource(t, tb).open, diffID: sha(other)},
		"wrong blob digest": func() layerSource {
			s := compressed([]byte("x"))
			s.digest = sha([]byte("something else"))
			return s
		}(),
		"blob longer than its descriptor": func() layerSource {
			s := compressed([]byte("x"))
			s.size = 10
			return s
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := unpackLayer(context.Background(), src, filepath.Join(t.TempDir(), "root"), bigLimits(), nil)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
		})
	}
	t.Run("right", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		if _, err := unpackLayer(context.Background(), compressed([]byte("x")), root, bigLimits(), nil); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "x" {
			t.Errorf("a = %q", b)
		}
	})
}

func TestUnpackWhiteouts(t *testing.T) {
	t.Parallel()
	root, _, _, err := unpackInto(t, bigLimits(),
		dir("d"), whiteout("d", "gone"), file("d/kept", "k"),
		dir("o"), file("o/.wh..wh..opq", ""), whiteout("o", "moot"), file("o/new", "n"),
		whiteout("", "toplevel"),
		file("x/.wh..wh.plnk", ""),
	)
	if err != nil {
		t.Fatal(err)
	}
	get := func(p, attr string) string {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(root, p), attr, buf)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(buf[:n])
	}
	if got := get("d/gone", xattrWhiteout); got != "y" {
		t.Errorf("d/gone whiteout xattr = %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(root, "d/gone")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("d/gone: %v %v", fi, err)
	}
	if got := get("d", xattrOpaque); got != "x" {
		t.Errorf("d opaque xattr = %q, want x", got)
	}
	if got := get("o", xattrOpaque); got != "y" {
		t.Errorf("o opaque xattr = %q, want y", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "o/moot")); err == nil {
		t.Error("a whiteout inside an opaque directory was created")
	}
	if got := get(".", xattrOpaque); got != "x" {
		t.Errorf("root opaque xattr = %q, want x", got)
	}
	if got := get("toplevel", xattrWhiteout); got != "y" {
		t.Errorf("toplevel whiteout = %q", got)
	}
	for _, p := range []string{"d/.wh.gone", "o/.wh..wh..opq", "x/.wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s was unpacked as a file", p)
		}
	}
}

func TestUnpackReadOnlyDirsAndOwners(t *testing.T) {
	t.Parallel()
	root, _, u, err := unpackInto(t, bigLimits(),
		entry{name: "ro", typ: tar.TypeDir, mode: 0o555},
		entry{name: "ro/f", body: "f", mode: 0o444, uid: 1000, gid: 1000},
		entry{name: "ro/sub/g", body: "g", mode: 0o600},
		symlink("ro/l", "f"),
	)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "ro"))
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("ro: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "ro/sub/g")); string(b) != "g" {
		t.Errorf("ro/sub/g = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(root, "ro/l")); l != "f" {
		t.Errorf("ro/l -> %q", l)
	}
	if len(u.owners) != 1 || u.owners[0] != (Owner{Path: "ro/f", UID: 1000, GID: 1000}) {
		t.Errorf("owners = %+v", u.owners)
	}
	if fi, _ := os.Stat(filepath.Join(root, "ro/f")); fi.ModTime().Year() != 2026 {
		t.Errorf("mtime not kept: %v", fi.ModTime())
	}
}

// TestUnpackSparseBomb: a sparse file that a few bytes of tar expand to
// far more on disk stops at the size limit.
func TestUnpackSparseBomb(t *testing.T) {
	t.Parallel()
	// A PAX 1.0 sparse entry (Go's tar.Writer makes none, so the PAX
	// header is patched in): 64 MiB of holes, then 512 bytes of data.
	const size = 64 << 20
	record := func(k, v string) string {
		r := " " + k + "=" + v + "\n"
		n := len(r) + 1
		for len(strconv.Itoa(n))+len(r) != n {
			n++
		}
		return strconv.Itoa(n) + r
	}
	pax := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") + record("GNU.sparse.name", "bomb") + record("GNU.sparse.realsize", strconv.Itoa(size))
	sparseMap := "1\n" + strconv.Itoa(size-512) + "\n512\n"
	data := sparseMap + strings.Repeat("\x00", (512-len(sparseMap)%512)%512) + strings.Repeat("x", 512)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "PaxHeaders/bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(pax)), Format: tar.FormatUSTAR})
	io.WriteString(tw, pax)
	tw.WriteHeader(&tar.Header{Name: "GNUSparseFile.0/bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatUSTAR})
	io.WriteString(tw, data)
	tw.Close()
	b := buf.Bytes()
	b[156] = tar.TypeXHeader // the first header becomes the PAX header
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))

	root := filepath.Join(t.TempDir(), "root")
	t.Cleanup(func() { removeAll(root) })
	if _, err := unpackTar(bytes.NewReader(b), filepath.Join(t.TempDir(), "check"), bigLimits()); err != nil {
		t.Fatalf("the sparse tar does not unpack: %v", err)
	}
	_, err := unpackTar(bytes.NewReader(b), root, newLimits(1<<20, 100))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a %d-byte tar of a %d-byte sparse file: err = %v, want ErrTooLarge", len(b), size, err)
	}
}
