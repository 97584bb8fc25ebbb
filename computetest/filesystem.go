package computetest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"testing/iotest"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
)

// testFileSystem runs the filesystem cases twice: through the provider's
// native filesystem (when its sandboxes have one), and through the generic
// one package compute builds on commands (driver.ExecFileSystem), which
// is what users of a provider without a native filesystem get. The second
// run hides the native filesystem behind execOnly, so both go through the
// same *compute.FileSystem code.
func (s *suite) testFileSystem(t *testing.T) {
	t.Run("Native", func(t *testing.T) {
		probe := s.sandbox(t, nil)
		if _, ok := probe.Driver().(driver.FileSystemer); !ok {
			t.Skip("skipped: the provider's sandboxes have no native filesystem (driver.FileSystemer); the Exec cases cover the filesystem they get")
		}
		fsCases(t, func(t *testing.T) *compute.Sandbox { return create(t, s.p, nil) })
	})
	t.Run("Exec", func(t *testing.T) {
		fsCases(t, func(t *testing.T) *compute.Sandbox {
			sb := create(t, execOnly{s.p}, nil)
			if _, ok := sb.Driver().(driver.FileSystemer); ok {
				t.Fatalf("execOnly did not hide the native filesystem")
			}
			return sb
		})
	})
}

// execOnly is a provider whose sandboxes have only the required methods,
// so that package compute falls back to ExecFileSystem.
type execOnly struct{ driver.Provider }

// execOnlySandbox hides every optional interface of a driver.Sandbox.
type execOnlySandbox struct{ driver.Sandbox }

func (p execOnly) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	ps, err := p.Provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	return execOnlySandbox{ps}, nil
}

func (p execOnly) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	ps, err := p.Provider.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return execOnlySandbox{ps}, nil
}

func (p execOnly) List(ctx context.Context) ([]driver.Sandbox, error) {
	list, err := p.Provider.List(ctx)
	for i, ps := range list {
		list[i] = execOnlySandbox{ps}
	}
	return list, err
}

// fsCases are the filesystem cases, each in a sandbox from newSandbox.
func fsCases(t *testing.T, newSandbox func(t *testing.T) *compute.Sandbox) {
	// setup gives a case its sandbox, filesystem and context.
	setup := func(t *testing.T) (context.Context, *compute.Sandbox, *compute.FileSystem, string) {
		t.Helper()
		t.Parallel()
		ctx := testContext(t)
		sb := newSandbox(t)
		return ctx, sb, sb.FileSystem(), scratch(t, sb)
	}

	t.Run("TextRoundTrip", func(t *testing.T) {
		ctx, sb, f, d := setup(t)
		for i, content := range []string{"Hello, ComputeSDK filesystem!", "ends with a newline\n", "\n\n", "", "no\nfinal newline", "crlf\r\n", "  spaces  "} {
			name := fmt.Sprintf("%s/text-%d.txt", d, i)
			writeFile(t, ctx, f, name, []byte(content))
			if got := readFile(t, ctx, f, name); string(got) != content {
				t.Errorf("ReadFile(%s) = %q; want %q (exactly what WriteFile wrote)", name, got, content)
			}
			if fi := stat(t, ctx, f, name); fi.Size != int64(len(content)) {
				t.Errorf("Stat(%s).Size = %d; want %d", name, fi.Size, len(content))
			}
			if got := shell(t, ctx, sb, "cat "+name); got != content {
				t.Errorf("cat %s in the sandbox = %q; want %q", name, got, content)
			}
		}
	})

	t.Run("AllBytes", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		var data []byte
		for range 2 {
			for b := range 256 {
				data = append(data, byte(b))
			}
		}
		writeFile(t, ctx, f, d+"/bytes.bin", data)
		if got := readFile(t, ctx, f, d+"/bytes.bin"); !bytes.Equal(got, data) {
			t.Errorf("ReadFile(bytes.bin) = %q; want all 256 byte values twice, %q", got, data)
		}
	})

	t.Run("Large", func(t *testing.T) {
		ctx, sb, f, d := setup(t)
		data := make([]byte, 10<<20)
		crand.Read(data)
		name := d + "/large.bin"
		writeFile(t, ctx, f, name, data)
		got := readFile(t, ctx, f, name)
		if !bytes.Equal(got, data) {
			t.Errorf("ReadFile of a 10 MiB random file: %d bytes, equal %v; want %d bytes, equal", len(got), bytes.Equal(got, data), len(data))
		}
		sum := sha256.Sum256(data)
		if out := shell(t, ctx, sb, "sha256sum "+name); !strings.HasPrefix(out, hex.EncodeToString(sum[:])) {
			t.Errorf("sha256sum %s in the sandbox = %q; want %s", name, out, hex.EncodeToString(sum[:]))
		}
		// Streaming in both directions, with a reader that returns short reads.
		if err := f.Write(ctx, d+"/streamed.bin", iotest.HalfReader(bytes.NewReader(data))); err != nil {
			t.Fatalf("Write(streamed.bin): %v", err)
		}
		r, err := f.Open(ctx, d+"/streamed.bin")
		if err != nil {
			t.Fatalf("Open(streamed.bin): %v", err)
		}
		got, err = io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("Open+ReadAll of the streamed file: %d bytes, equal %v, error %v; want %d bytes, equal, nil", len(got), bytes.Equal(got, data), err, len(data))
		}
	})

	t.Run("CreatesParents", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		name := d + "/a/b/c/d.txt"
		writeFile(t, ctx, f, name, []byte("deep"))
		if got := readFile(t, ctx, f, name); string(got) != "deep" {
			t.Errorf("ReadFile(%s) = %q; want %q", name, got, "deep")
		}
		for _, dir := range []string{d + "/a", d + "/a/b/c"} {
			if fi := stat(t, ctx, f, dir); !fi.IsDir {
				t.Errorf("Stat(%s).IsDir = false; want a directory created by WriteFile", dir)
			}
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		name := d + "/over.txt"
		writeFile(t, ctx, f, name, []byte("a long first content\nwith two lines\n"))
		writeFile(t, ctx, f, name, []byte("short"))
		if got := readFile(t, ctx, f, name); string(got) != "short" {
			t.Errorf("ReadFile after overwrite = %q; want %q (no leftover of the longer content)", got, "short")
		}
		writeFile(t, ctx, f, name, nil)
		if got := readFile(t, ctx, f, name); len(got) != 0 {
			t.Errorf("ReadFile after overwriting with nothing = %q; want empty", got)
		}
	})

	t.Run("Mkdir", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		dir := d + "/m/n/o"
		if err := f.MkdirAll(ctx, dir); err != nil {
			t.Fatalf("Mkdir(%s): %v", dir, err)
		}
		if fi := stat(t, ctx, f, dir); !fi.IsDir {
			t.Errorf("Stat(%s).IsDir = false after Mkdir", dir)
		}
		for _, e := range []string{dir, d + "/m", "/tmp"} {
			if err := f.MkdirAll(ctx, e); err != nil {
				t.Errorf("Mkdir(%s) of an existing directory: %v; want nil", e, err)
			}
		}
		writeFile(t, ctx, f, d+"/m/file", []byte("x"))
		if err := f.MkdirAll(ctx, d+"/m/file"); err == nil {
			t.Errorf("Mkdir over an existing file: nil error; want an error")
		}
		if got := readFile(t, ctx, f, d+"/m/file"); string(got) != "x" {
			t.Errorf("the file after a failed Mkdir over it holds %q; want %q", got, "x")
		}
	})

	t.Run("ReadDir", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		dir := d + "/list"
		before := time.Now()
		writeFile(t, ctx, f, dir+"/b.txt", []byte("bbb"))
		writeFile(t, ctx, f, dir+"/a.txt", []byte("a"))
		writeFile(t, ctx, f, dir+"/.hidden", []byte("hh"))
		writeFile(t, ctx, f, dir+"/c/inner.txt", []byte("inner"))
		list, err := f.ReadDir(ctx, dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir, err)
		}
		want := []struct {
			name string
			dir  bool
			size int64 // not checked for directories
		}{{".hidden", false, 2}, {"a.txt", false, 1}, {"b.txt", false, 3}, {"c", true, 0}}
		var names []string
		for _, fi := range list {
			names = append(names, fi.Name)
		}
		if len(list) != len(want) {
			t.Fatalf("ReadDir(%s) names = %q; want %q", dir, names, []string{".hidden", "a.txt", "b.txt", "c"})
		}
		for i, w := range want {
			fi := list[i]
			if fi.Name != w.name || fi.IsDir != w.dir || (!w.dir && fi.Size != w.size) {
				t.Errorf("ReadDir(%s)[%d] = {Name %q, IsDir %v, Size %d}; want {Name %q, IsDir %v, Size %d}", dir, i, fi.Name, fi.IsDir, fi.Size, w.name, w.dir, w.size)
			}
			if wantPath := dir + "/" + w.name; fi.Path != wantPath {
				t.Errorf("ReadDir(%s)[%d].Path = %q; want %q", dir, i, fi.Path, wantPath)
			}
			checkModTime(t, "ReadDir "+fi.Path, fi.ModTime, before)
			if fi.Mode&^0o777 != 0 || fi.Mode&0o400 == 0 {
				t.Errorf("ReadDir(%s)[%d].Mode = %#o; want permission bits only, owner-readable", dir, i, fi.Mode)
			}
		}
		empty := d + "/empty"
		if err := f.MkdirAll(ctx, empty); err != nil {
			t.Fatalf("Mkdir(%s): %v", empty, err)
		}
		if list, err := f.ReadDir(ctx, empty); err != nil || len(list) != 0 {
			t.Errorf("ReadDir of an empty directory = %v, %v; want no entries (never . or ..), nil", list, err)
		}
		if _, err := f.ReadDir(ctx, dir+"/a.txt"); err == nil {
			t.Errorf("ReadDir of a regular file: nil error; want an error")
		}
	})

	t.Run("ExistsStat", func(t *testing.T) {
		ctx, sb, f, d := setup(t)
		writeFile(t, ctx, f, d+"/st/file.txt", []byte("12345"))
		for _, c := range []struct {
			name string
			want bool
		}{
			{d + "/st/file.txt", true}, {d + "/st", true}, {"/tmp", true},
			{d + "/st/missing", false}, {d + "/missing/child", false},
		} {
			got, err := f.Exists(ctx, c.name)
			if err != nil || got != c.want {
				t.Errorf("Exists(%s) = %v, %v; want %v, nil", c.name, got, err, c.want)
			}
		}
		before := time.Now().Add(-time.Minute)
		fi := stat(t, ctx, f, d+"/st/file.txt")
		if fi.Name != "file.txt" || fi.IsDir || fi.Size != 5 || fi.Path != d+"/st/file.txt" {
			t.Errorf("Stat(file.txt) = %+v; want Name file.txt, IsDir false, Size 5, Path %s/st/file.txt", *fi, d)
		}
		checkModTime(t, "Stat(file.txt)", fi.ModTime, before)
		if fi.Info().Name() != "file.txt" || fi.Info().Size() != 5 || fi.Info().Mode().IsDir() {
			t.Errorf("FileInfo.Info() = %v; want the same file as an fs.FileInfo", fi.Info())
		}
		if fi := stat(t, ctx, f, d+"/st"); !fi.IsDir || fi.Name != "st" || !fi.Info().IsDir() || !fi.Info().Mode().IsDir() {
			t.Errorf("Stat(dir) = %+v; want IsDir, Name st", *fi)
		}
		// Stat follows symbolic links.
		shell(t, ctx, sb, "ln -s file.txt "+d+"/st/link && ln -s "+d+"/st "+d+"/dirlink")
		if fi := stat(t, ctx, f, d+"/st/link"); fi.Size != 5 || fi.IsDir {
			t.Errorf("Stat(symlink to a 5-byte file) = %+v; want Size 5, not a directory", *fi)
		}
		if fi := stat(t, ctx, f, d+"/dirlink"); !fi.IsDir {
			t.Errorf("Stat(symlink to a directory) = %+v; want IsDir", *fi)
		}
		if got := readFile(t, ctx, f, d+"/dirlink/link"); string(got) != "12345" {
			t.Errorf("ReadFile through symlinks = %q; want %q", got, "12345")
		}
	})

	t.Run("Remove", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		writeFile(t, ctx, f, d+"/rm/file.txt", []byte("x"))
		writeFile(t, ctx, f, d+"/rm/tree/a.txt", []byte("a"))
		writeFile(t, ctx, f, d+"/rm/tree/sub/deeper/b.txt", []byte("b"))
		for _, name := range []string{d + "/rm/file.txt", d + "/rm/tree"} {
			if err := f.RemoveAll(ctx, name); err != nil {
				t.Errorf("Remove(%s): %v", name, err)
			}
			if ok, err := f.Exists(ctx, name); ok || err != nil {
				t.Errorf("Exists(%s) after Remove = %v, %v; want false, nil", name, ok, err)
			}
		}
		if ok, _ := f.Exists(ctx, d+"/rm"); !ok {
			t.Errorf("Remove of children removed their parent %s/rm too", d)
		}
		for _, name := range []string{d + "/rm/missing", d + "/missing/child"} {
			if err := f.RemoveAll(ctx, name); err != nil {
				t.Errorf("Remove(%s) of a missing path: %v; want nil", name, err)
			}
		}
		if err := f.RemoveAll(ctx, "/"); err == nil {
			t.Errorf("Remove(/): nil error; want a refusal")
		}
	})

	t.Run("NotExist", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		missing := d + "/no/such/file.txt"
		_, err := f.ReadFile(ctx, missing)
		checkNotExist(t, "ReadFile", err)
		_, err = f.Open(ctx, missing)
		checkNotExist(t, "Open", err)
		_, err = f.ReadDir(ctx, d+"/no/such/dir")
		checkNotExist(t, "ReadDir", err)
		_, err = f.Stat(ctx, missing)
		checkNotExist(t, "Stat", err)
		if err := f.MkdirAll(ctx, d+"/dir"); err != nil {
			t.Fatalf("Mkdir: %v", err)
		}
		if _, err := f.ReadFile(ctx, d+"/dir"); err == nil {
			t.Errorf("ReadFile of a directory: nil error; want an error")
		}
		if err := f.WriteFile(ctx, d+"/dir", []byte("x")); err == nil {
			t.Errorf("WriteFile over a directory: nil error; want an error")
		}
		if _, err := f.ReadFile(ctx, ""); err == nil {
			t.Errorf("ReadFile(\"\"): nil error; want an error")
		}
	})

	t.Run("Relative", func(t *testing.T) {
		ctx, sb, f, _ := setup(t)
		wd := workDir(t, ctx, sb)
		writeFile(t, ctx, f, "rel.txt", []byte("relative"))
		if res := run(t, ctx, sb, []string{"cat", "rel.txt"}, nil); res.Stdout != "relative" {
			t.Errorf("cat rel.txt after WriteFile(rel.txt) = %q (stderr %q); want %q", res.Stdout, res.Stderr, "relative")
		}
		if got := readFile(t, ctx, f, path.Join(wd, "rel.txt")); string(got) != "relative" {
			t.Errorf("ReadFile(%s) = %q; want %q", path.Join(wd, "rel.txt"), got, "relative")
		}
		shell(t, ctx, sb, "mkdir -p reldir/sub && printf made > reldir/made.txt")
		if got := readFile(t, ctx, f, "reldir/made.txt"); string(got) != "made" {
			t.Errorf("ReadFile(reldir/made.txt) = %q; want %q", got, "made")
		}
		if fi := stat(t, ctx, f, "reldir/made.txt"); fi.Name != "made.txt" || fi.Size != 4 {
			t.Errorf("Stat(reldir/made.txt) = %+v; want Name made.txt, Size 4", *fi)
		}
		list, err := f.ReadDir(ctx, "reldir")
		if err != nil {
			t.Fatalf("ReadDir(reldir): %v", err)
		}
		if len(list) != 2 || list[0].Name != "made.txt" || list[1].Name != "sub" {
			t.Fatalf("ReadDir(reldir) = %+v; want made.txt and sub", list)
		}
		if want := path.Join(wd, "reldir", "made.txt"); list[0].Path != want {
			t.Errorf("ReadDir(reldir)[0].Path = %q; want the full path %q", list[0].Path, want)
		}
		if err := f.MkdirAll(ctx, "newdir/x"); err != nil {
			t.Fatalf("Mkdir(newdir/x): %v", err)
		}
		shell(t, ctx, sb, "test -d "+path.Join(wd, "newdir/x"))
		if err := f.RemoveAll(ctx, "newdir"); err != nil {
			t.Fatalf("Remove(newdir): %v", err)
		}
		if res := run(t, ctx, sb, []string{"test", "-e", path.Join(wd, "newdir")}, nil); res.ExitCode == 0 {
			t.Errorf("%s exists after Remove(newdir)", path.Join(wd, "newdir"))
		}
	})

	t.Run("SharedWithCommands", func(t *testing.T) {
		ctx, sb, f, d := setup(t)
		writeFile(t, ctx, f, d+"/w.txt", []byte("from WriteFile\n"))
		if got := shell(t, ctx, sb, "cat "+d+"/w.txt"); got != "from WriteFile\n" {
			t.Errorf("cat of a file from WriteFile = %q; want %q", got, "from WriteFile\n")
		}
		shell(t, ctx, sb, `printf 'from\ncommand' > `+d+`/c.txt && mkdir -p `+d+`/cdir`)
		if got := readFile(t, ctx, f, d+"/c.txt"); string(got) != "from\ncommand" {
			t.Errorf("ReadFile of a file a command wrote = %q; want %q", got, "from\ncommand")
		}
		list, err := f.ReadDir(ctx, d)
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		var names []string
		for _, fi := range list {
			names = append(names, fi.Name)
		}
		if want := []string{"c.txt", "cdir", "w.txt"}; !slices.Equal(names, want) {
			t.Errorf("ReadDir(%s) names = %q; want %q", d, names, want)
		}
	})

	t.Run("OddNames", func(t *testing.T) {
		ctx, sb, f, d := setup(t)
		names := []string{"with space.txt", "quote'\"$x`y`.txt", "-dash.txt", "ünï 日本.txt", "new\nline.txt", "tab\tname.txt", "star*.txt", "semi;colon"}
		dir := d + "/odd"
		for _, n := range names {
			writeFile(t, ctx, f, dir+"/"+n, []byte("content of "+n))
			if got := readFile(t, ctx, f, dir+"/"+n); string(got) != "content of "+n {
				t.Errorf("ReadFile(%q) = %q; want %q", n, got, "content of "+n)
			}
		}
		list, err := f.ReadDir(ctx, dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir, err)
		}
		var got []string
		for _, fi := range list {
			got = append(got, fi.Name)
			if fi.Size != int64(len("content of "+fi.Name)) {
				t.Errorf("ReadDir: %q has Size %d; want %d", fi.Name, fi.Size, len("content of "+fi.Name))
			}
		}
		want := slices.Clone(names)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("ReadDir(%s) names = %q; want %q", dir, got, want)
		}
		// A relative name that starts with a dash is a file, not an option.
		writeFile(t, ctx, f, "-rel-dash.txt", []byte("dash"))
		if got := readFile(t, ctx, f, "-rel-dash.txt"); string(got) != "dash" {
			t.Errorf("ReadFile(-rel-dash.txt) = %q; want %q", got, "dash")
		}
		if res := run(t, ctx, sb, []string{"cat", "./-rel-dash.txt"}, nil); res.Stdout != "dash" {
			t.Errorf("cat ./-rel-dash.txt = %q; want %q", res.Stdout, "dash")
		}
		for _, n := range names {
			if err := f.RemoveAll(ctx, dir+"/"+n); err != nil {
				t.Errorf("Remove(%q): %v", n, err)
			}
		}
		if list, err := f.ReadDir(ctx, dir); err != nil || len(list) != 0 {
			t.Errorf("ReadDir after removing every odd name = %+v, %v; want empty", list, err)
		}
	})

	t.Run("FS", func(t *testing.T) {
		ctx, _, f, d := setup(t)
		root := d + "/fsview"
		files := map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta", "sub/c/d.txt": "delta", "empty.txt": ""}
		for name, content := range files {
			writeFile(t, ctx, f, root+"/"+name, []byte(content))
		}
		if err := f.MkdirAll(ctx, root+"/emptydir"); err != nil {
			t.Fatalf("Mkdir: %v", err)
		}
		fsys := f.FS(ctx, root)
		if err := fstest.TestFS(fsys, "a.txt", "sub/b.txt", "sub/c/d.txt", "empty.txt", "emptydir"); err != nil {
			t.Errorf("fstest.TestFS on the sandbox's io/fs view:\n%v", err)
		}
		got := map[string]string{}
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			got[p] = string(b)
			return err
		})
		if err != nil {
			t.Errorf("fs.WalkDir: %v", err)
		}
		if fmt.Sprint(got) != fmt.Sprint(files) {
			t.Errorf("fs.WalkDir + fs.ReadFile found %q; want %q", got, files)
		}
		if _, err := fs.ReadFile(fsys, "missing.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("fs.ReadFile(missing.txt) error = %v; want fs.ErrNotExist", err)
		}
	})
}

func writeFile(t *testing.T, ctx context.Context, f *compute.FileSystem, name string, data []byte) {
	t.Helper()
	if err := f.WriteFile(ctx, name, data); err != nil {
		t.Fatalf("WriteFile(%q, %d bytes): %v", name, len(data), err)
	}
}

func readFile(t *testing.T, ctx context.Context, f *compute.FileSystem, name string) []byte {
	t.Helper()
	data, err := f.ReadFile(ctx, name)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", name, err)
	}
	return data
}

func stat(t *testing.T, ctx context.Context, f *compute.FileSystem, name string) *compute.FileInfo {
	t.Helper()
	fi, err := f.Stat(ctx, name)
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	if fi == nil {
		t.Fatalf("Stat(%q) = nil, nil", name)
	}
	return fi
}

func checkNotExist(t *testing.T, op string, err error) {
	t.Helper()
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Errorf("%s of a missing path: error %v (%T); want an *fs.PathError matching fs.ErrNotExist", op, err, err)
	}
}

// checkModTime fails unless mt is a plausible modification time for a file
// made after before (allowing a remote clock a few minutes of skew).
func checkModTime(t *testing.T, what string, mt, before time.Time) {
	t.Helper()
	const skew = 5 * time.Minute
	if mt.IsZero() || mt.Before(before.Add(-skew)) || mt.After(time.Now().Add(skew)) {
		t.Errorf("%s: ModTime %v; want a time near %v", what, mt, before)
	}
}
