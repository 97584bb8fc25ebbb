package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadDockerfile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		name := filepath.Join(dir, "Dockerfile")
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	image, steps, err := readDockerfile(write("# a comment\n\nFROM busybox:1\nRUN echo a \\\n  && echo b\nENV GREETING=hi\nenv X y\n# between\nWORKDIR /srv\n"))
	want := []string{"RUN echo a  && echo b", "ENV GREETING=hi", "env X y", "WORKDIR /srv"}
	if err != nil || image != "busybox:1" || !slices.Equal(steps, want) {
		t.Errorf("readDockerfile = %q, %q, %v; want busybox:1, %q", image, steps, err, want)
	}
	for body, says := range map[string]string{
		"RUN true\n":                      "before FROM",
		"# nothing\n":                     "no FROM",
		"FROM a\nFROM b\n":                "second FROM",
		"FROM a AS b\n":                   "one image reference",
		"FROM --platform=linux/amd64 a\n": "one image reference",
		"FROM a\nADD x /x\n":              "ADD is not supported",
		"FROM a\nCOPY ../x /x\n":          "climbs out",
		"FROM a\nCMD [\"sh\"]\n":          "CMD is not supported",
		"FROM a\nRUN [\"sh\"]\n":          "exec-form",
		"FROM a\nRUN true \\\n":           "backslash",
	} {
		_, _, err := readDockerfile(write(body))
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("readDockerfile(%q) = %v; want an error saying %q", body, err, says)
		}
	}
	if _, _, err := readDockerfile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing Dockerfile read without error")
	}
}

func TestImageStepFlagsResolve(t *testing.T) {
	name := filepath.Join(t.TempDir(), "Dockerfile")
	os.WriteFile(name, []byte("FROM busybox:1\nRUN echo a\n"), 0o644)
	f := imageStepFlags{steps: []string{"ENV A=1"}, dockerfile: name}
	image, steps, err := f.resolve("")
	if err != nil || image != "busybox:1" || !slices.Equal(steps, []string{"RUN echo a", "ENV A=1"}) {
		t.Errorf("resolve = %q, %q, %v", image, steps, err)
	}
	if _, _, err := f.resolve("other:1"); err == nil || !strings.Contains(err.Error(), "--dockerfile") {
		t.Errorf("--image with --dockerfile: %v; want a usage error", err)
	}
	f = imageStepFlags{steps: []string{"RUN true"}}
	if _, _, err := f.resolve(""); err == nil || !strings.Contains(err.Error(), "base image") {
		t.Errorf("--image-step without an image: %v", err)
	}
	f = imageStepFlags{steps: []string{"FROM x"}}
	if _, _, err := f.resolve("busybox"); err == nil || !strings.Contains(err.Error(), "unknown instruction") {
		t.Errorf("--image-step FROM: %v", err)
	}
}

// --image-step and --dockerfile on exec, shell and sandbox create with
// the local provider.
func TestImageStepFlags(t *testing.T) {
	ref := imageRegistry(t, busyboxImage(t)) // sets COMPUTE_CACHE_DIR
	probe := `cat /etc/built; echo "$GREETING"; pwd`
	want := "built\nhi\n/srv\n"
	cli(t, "", "exec", "--image", ref, "--image-step", "RUN echo built > /etc/built", "--image-step", "ENV GREETING=hi", "--image-step", "WORKDIR /srv", "--", "sh", "-c", probe).check(t, 0, want)

	df := filepath.Join(t.TempDir(), "Dockerfile")
	os.WriteFile(df, []byte("FROM "+ref+"\nRUN echo built > /etc/built\nENV GREETING=hi\n"), 0o644)
	cli(t, probe, "shell", "--dockerfile", df, "--image-step", "WORKDIR /srv").check(t, 0, want)

	o := cli(t, "", "exec", "--image", ref, "--image-step", "RUN echo no >&2; exit 4", "--", "true")
	if o.code == 0 || !strings.Contains(o.stderr, "code 4") || !strings.Contains(o.stderr, "no") {
		t.Errorf("exec with a failing step: exit %d, stderr %q; want a failure with the step's exit code and output", o.code, o.stderr)
	}
	if o := cli(t, "", "exec", "--image-step", "RUN true", "--", "true"); o.code != exitUsage {
		t.Errorf("--image-step without --image: exit %d, stderr %q; want %d", o.code, o.stderr, exitUsage)
	}

	// COPY from the Dockerfile's directory, or from --context; a link
	// in the context does not lead out of it.
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "app.sh"), []byte("#!/bin/sh\necho from the context\n"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(ctx, "leak"))
	df = filepath.Join(ctx, "Dockerfile")
	os.WriteFile(df, []byte("FROM "+ref+"\nWORKDIR /app\nCOPY app.sh ./\n"), 0o644)
	cli(t, "", "exec", "--dockerfile", df, "--", "sh", "./app.sh").check(t, 0, "from the context\n")
	cli(t, "", "exec", "--image", ref, "--context", ctx, "--image-step", "COPY app.sh /bin/", "--", "app.sh").check(t, 0, "from the context\n")
	o = cli(t, "", "exec", "--image", ref, "--context", ctx, "--image-step", "COPY leak /leak", "--", "true")
	if o.code == 0 || strings.Contains(o.stderr, "root:") {
		t.Errorf("COPY of a link out of the context: exit %d, stderr %q; want it refused", o.code, o.stderr)
	}
	if o := cli(t, "", "exec", "--image", ref, "--context", ctx, "--", "true"); o.code != exitUsage {
		t.Errorf("--context without COPY: exit %d; want %d", o.code, exitUsage)
	}
}
