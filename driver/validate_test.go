package driver

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestValidateImageSteps(t *testing.T) {
	good := []string{"RUN echo built > /etc/built", "ENV GREETING=hi", "env A b c", "WORKDIR /srv", "  RUN\ttrue  "}
	if err := (&CreateOptions{Image: "busybox", ImageSteps: good}).Validate(); err != nil {
		t.Fatalf("good steps: %v", err)
	}
	for _, tc := range []struct {
		image string
		steps []string
		want  error
		says  string
	}{
		{"", []string{"RUN true"}, ErrInvalid, "base image"},
		{"b", []string{"RUN true", ""}, ErrInvalid, "step 2"},
		{"b", []string{"FROM x"}, ErrInvalid, "unknown instruction"},
		{"b", []string{"RUN a\x00b"}, ErrInvalid, "NUL"},
		{"b", []string{"RUN a\nb"}, ErrInvalid, "line break"},
		{"b", []string{"RUN"}, ErrInvalid, "without a command"},
		{"b", []string{`RUN ["sh"]`}, ErrInvalid, "exec-form"},
		{"b", []string{"ENV =x"}, ErrInvalid, "NAME=value"},
		{"b", []string{"ENV X"}, ErrInvalid, "NAME=value"},
		{"b", []string{"WORKDIR"}, ErrInvalid, "directory"},
		{"b", []string{"RUN " + strings.Repeat("x", MaxImageStep)}, ErrInvalid, "longer"},
		{"b", make([]string, MaxImageSteps+1), ErrInvalid, "more than"},
		{"b", []string{"ADD a /a"}, ErrUnsupported, "ADD"},
		{"b", []string{"COPY a /a"}, ErrInvalid, "ImageContext"},
		{"b", []string{"COPY /etc/passwd /a"}, ErrInvalid, "absolute"},
		{"b", []string{"COPY ../x /a"}, ErrInvalid, "climbs out"},
		{"b", []string{"COPY a/../../x /a"}, ErrInvalid, "climbs out"},
		{"b", []string{"COPY --from=x a /a"}, ErrInvalid, "--from"},
		{"b", []string{"COPY a"}, ErrInvalid, "destination"},
		{"b", []string{`COPY ["a", 1]`}, ErrInvalid, "JSON"},
	} {
		err := (&CreateOptions{Image: tc.image, ImageSteps: tc.steps}).Validate()
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q on %q: %v, want %v saying %q", tc.steps, tc.image, err, tc.want, tc.says)
		}
	}
}

func TestParseImageStep(t *testing.T) {
	for in, want := range map[string][2]string{
		"RUN echo hi":       {"RUN", "echo hi"},
		"run  echo hi ":     {"RUN", "echo hi"},
		"ENV A=1":           {"ENV", "A=1"},
		"ENV A=x y":         {"ENV", "A=x y"},
		`ENV A="x y"`:       {"ENV", "A=x y"},
		"ENV A x=y":         {"ENV", "A=x=y"},
		"ENV PATH /a:/b":    {"ENV", "PATH=/a:/b"},
		"WORKDIR /srv/app ": {"WORKDIR", "/srv/app"},
	} {
		instr, arg, err := ParseImageStep(in)
		if err != nil || instr != want[0] || arg != want[1] {
			t.Errorf("ParseImageStep(%q) = %q, %q, %v; want %q, %q", in, instr, arg, err, want[0], want[1])
		}
	}
}

func TestResolveCopy(t *testing.T) {
	ctx := fstest.MapFS{
		"app.py":        {Data: []byte("print(1)\n"), Mode: 0o755},
		"lib/a.py":      {Data: []byte("a"), Mode: 0o644},
		"lib/sub/b.txt": {Data: []byte("bb"), Mode: 0o600},
		"x.py":          {Data: []byte("x"), Mode: 0o644},
		"link":          {Data: []byte("app.py"), Mode: fs.ModeSymlink},
	}
	type f struct {
		path string
		mode fs.FileMode
		data string
	}
	for _, tc := range []struct {
		arg, dir string
		want     []f
	}{
		{"app.py /srv/app.py", "", []f{{"/srv/app.py", 0o755, "print(1)\n"}}},
		{"app.py /srv/", "", []f{{"/srv/app.py", 0o755, "print(1)\n"}}},
		{"app.py bin/", "/opt", []f{{"/opt/bin/app.py", 0o755, "print(1)\n"}}},
		{"app.py .", "/w", []f{{"/w/app.py", 0o755, "print(1)\n"}}},
		{"lib /l", "", []f{{"/l", fs.ModeDir | 0o555, ""}, {"/l/a.py", 0o644, "a"}, {"/l/sub", fs.ModeDir | 0o555, ""}, {"/l/sub/b.txt", 0o600, "bb"}}},
		{"*.py /p/", "", []f{{"/p/app.py", 0o755, "print(1)\n"}, {"/p/x.py", 0o644, "x"}}},
		{`["x.py", "lib/a.py", "/two/"]`, "", []f{{"/two/x.py", 0o644, "x"}, {"/two/a.py", 0o644, "a"}}},
		// A source that is a link is what it leads to in the context.
		{"link /a", "", []f{{"/a", 0o755, "print(1)\n"}}},
	} {
		files, err := ResolveCopy(ctx, tc.arg, tc.dir)
		if err != nil {
			t.Errorf("COPY %s: %v", tc.arg, err)
			continue
		}
		var got []f
		for _, c := range files {
			got = append(got, f{c.Path, c.Mode, string(c.Data)})
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("COPY %s (in %q):\n got %v\nwant %v", tc.arg, tc.dir, got, tc.want)
		}
	}
	for arg, says := range map[string]string{
		"nothere /a":        "not in the build context",
		"*.go /a/":          "matches no file",
		"*.py /a":           "must be a directory ending in /",
		"x.py app.py /a":    "several sources",
		"/etc/passwd /a":    "absolute",
		"../up /a":          "climbs out",
		"--chown=1 x.py /a": "--chown",
	} {
		if _, err := ResolveCopy(ctx, arg, ""); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("COPY %s: %v, want an error saying %q", arg, err, says)
		}
	}
	if _, err := ResolveCopy(nil, "x.py /a", ""); err == nil || !strings.Contains(err.Error(), "ImageContext") {
		t.Errorf("COPY without a context: %v", err)
	}
	withLink := fstest.MapFS{"d/f": {Data: []byte("f")}, "d/l": {Data: []byte("f"), Mode: fs.ModeSymlink}}
	if _, err := ResolveCopy(withLink, "d /d", ""); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("COPY of a directory holding a link: %v", err)
	}
	big := fstest.MapFS{"big": {Data: make([]byte, MaxImageContextBytes+1)}}
	if _, err := ResolveCopy(big, "big /big", ""); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("COPY of more than MaxImageContextBytes: %v", err)
	}
}

// The files a client sends make, on the other side, a context that
// copies the same.
func TestImageContextFilesRoundTrip(t *testing.T) {
	ctx := fstest.MapFS{
		"app.py":   {Data: []byte("print(1)"), Mode: 0o755},
		"lib/a.py": {Data: []byte("a"), Mode: 0o644},
		"unused":   {Data: []byte("not sent")},
	}
	steps := []string{"RUN true", "COPY app.py /srv/", "COPY lib /srv/lib"}
	files, err := ImageContextFiles(steps, ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == "unused" {
			t.Errorf("a file no COPY names was sent: %q", f.Path)
		}
	}
	remote := ContextFS(files)
	for _, arg := range []string{"app.py /srv/", "lib /srv/lib"} {
		a, err1 := ResolveCopy(ctx, arg, "")
		b, err2 := ResolveCopy(remote, arg, "")
		if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("COPY %s: here %v (%v), there %v (%v)", arg, a, err1, b, err2)
		}
	}
}
