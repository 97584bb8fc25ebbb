package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The example runs on the local provider; every line of its output is
// checked, and the chart it saved is a PNG image of a sensible size.
func TestExample(t *testing.T) {
	// Local sandboxes run the host's python3.
	if err := exec.Command("/usr/bin/python3", "-c", "import IPython, matplotlib, pandas").Run(); err != nil {
		t.Skip("skipped: the host's python3 lacks IPython, matplotlib or pandas (apt install python3-ipython python3-matplotlib python3-pandas)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	chart := filepath.Join(t.TempDir(), "chart.png")
	var out strings.Builder
	if err := run(ctx, &out, chart); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := regexp.MustCompile(`^context ctx-[a-z0-9]+: Python 3\.\d+\.\d+, rich display: true
rows: 6
north: 415
south: 310
chart: .*chart\.png \(PNG, \d+ bytes\)
error: KeyError
$`)
	if !want.MatchString(out.String()) {
		t.Fatalf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
	data, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the saved chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() < 150 {
		t.Errorf("chart is %dx%d; want a full figure", b.Dx(), b.Dy())
	}
}
