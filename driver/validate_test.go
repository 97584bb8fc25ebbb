package driver

import (
	"errors"
	"strings"
	"testing"
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
		{"b", []string{"COPY a /a"}, ErrUnsupported, "COPY"},
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
