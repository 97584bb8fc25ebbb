//go:build linux

package local_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
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
