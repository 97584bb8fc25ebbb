package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every row of a full run on one provider, in order: the first six are
// the names scripts read, and must not change.
var benchRows = []string{
	"first create + echo (cold)",
	"create + echo (time to interactive)",
	"staggered create + echo (each)",
	"burst create + echo (each)",
	"burst create + echo (wall time)",
	"RunCommand /bin/true",
	"RunCode python print(1)",
	"RunCode node console.log(1)",
	"WriteFile + ReadFile 1 MiB",
	"NewCodeContext python + cell 1+1",
	"code context cell 1+1 (python)",
}

func TestBench(t *testing.T) {
	o := cli(t, "", "bench", "-n", "2", "--concurrency", "2", "--stagger", "1ms")
	if o.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", o.code, o.stderr)
	}
	lines := strings.Split(o.stdout, "\n")
	if !strings.HasPrefix(lines[0], "provider local (namespaces), 2 runs each") {
		t.Errorf("first line %q", lines[0])
	}
	var got []string
	for _, l := range lines[3:] {
		if l == "" {
			continue
		}
		for _, row := range benchRows {
			if strings.HasPrefix(l, row+"  ") {
				got = append(got, row)
				// n, then four times in ms, and no provider column.
				if f := strings.Fields(strings.TrimPrefix(l, row)); len(f) != 9 || f[2] != "ms" {
					t.Errorf("row %q: fields %q", l, f)
				}
			}
		}
	}
	if !slices.Equal(got, benchRows) {
		t.Errorf("rows %q, want %q; output:\n%s", got, benchRows, o.stdout)
	}
}

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "missing", "chart.svg")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "-n must be at least 1"},
		{[]string{"--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"--stagger", "-1s"}, "--stagger must not be negative"},
		{[]string{"--latency", "5ms"}, "add --emulate"},
		{[]string{"--emulate", "--latency", "-1ms", "--provider", "modal"}, "--latency must not be negative"},
		{[]string{"--emulate"}, "name modal in --provider"},
		{[]string{"--provider", "local,nosuch"}, `unknown provider "nosuch"`},
		{[]string{"--provider", "local", "--provider", "local"}, `names "local" twice`},
		{[]string{"--provider", "local,"}, "an empty name"},
		{[]string{"--provider", "remote"}, "give its URL with --server"},
		{[]string{"--provider", "local", "--server", "http://127.0.0.1:1"}, "name remote in --provider"},
		{[]string{"--provider", "modal", "--isolation", "none"}, "--isolation is a flag of the local provider"},
		{[]string{"--only", "exec,nosuch"}, `unknown measurement "nosuch"`},
		{[]string{"--svg", svg}, "no directory"},
		{[]string{"--server", "ftp://127.0.0.1"}, "want the server's URL"},
		{[]string{"extra"}, "takes no arguments"},
	} {
		o := cli(t, "", append([]string{"bench"}, tc.args...)...)
		if o.code != exitUsage {
			t.Errorf("bench %q: exit %d, want %d (usage); stderr:\n%s", tc.args, o.code, exitUsage, o.stderr)
		}
		o.stderrContains(t, tc.want)
		if o.stdout != "" {
			t.Errorf("bench %q printed %q", tc.args, o.stdout)
		}
	}
	if _, err := os.Stat(filepath.Dir(svg)); !os.IsNotExist(err) {
		t.Errorf("a refused --svg made its directory: %v", err)
	}
}

// TestBenchProviders measures local, modal on an emulator started by
// bench, and remote (a compute server in this process) in one run, and
// checks what the JSON and the chart hold for each, never the times.
func TestBenchProviders(t *testing.T) {
	s := startServe(t)
	svg := filepath.Join(t.TempDir(), "bench.svg")
	o := cli(t, "", "bench", "--provider", "local,modal", "--provider", "remote", "--server", s.url,
		"--emulate", "--latency", "0s", "-n", "2", "--concurrency", "2",
		"--only", "cold,sequential,burst,exec,files", "--json", "--svg", svg)
	if o.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", o.code, o.stderr)
	}
	rep := parseBenchJSON(t, o.stdout)
	providers := []string{"local", "modal", "remote"}
	var names []string
	for _, p := range rep.Providers {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, providers) {
		t.Errorf("providers %q, want %q", names, providers)
	}
	if rep.Providers[1].Detail != "emulator, 0s per RPC" || rep.Providers[2].Detail != s.url {
		t.Errorf("provider details %+v", rep.Providers)
	}
	if rep.Version != 1 || rep.N != 2 || rep.Concurrency != 2 {
		t.Errorf("version %d, n %d, concurrency %d", rep.Version, rep.N, rep.Concurrency)
	}
	// Operation after operation, every provider in order within each.
	type want struct {
		op, mode string
		n        int
	}
	var wants []want
	for _, w := range []want{
		{"first create + echo (cold)", "cold", 1},
		{"create + echo (time to interactive)", "sequential", 2},
		{"burst create + echo (each)", "burst", 2},
		{"burst create + echo (wall time)", "burst", 1},
		{"RunCommand /bin/true", "exec", 2},
		{"WriteFile + ReadFile 1 MiB", "files", 2},
	} {
		for range providers {
			wants = append(wants, w)
		}
	}
	if len(rep.Results) != len(wants) {
		t.Fatalf("%d results, want %d:\n%s", len(rep.Results), len(wants), o.stdout)
	}
	for i, r := range rep.Results {
		w := wants[i]
		if r.Operation != w.op || r.Mode != w.mode || r.Provider != providers[i%3] || r.N != w.n || len(r.SamplesMS) != w.n {
			t.Errorf("result %d: %s/%s/%s n %d (%d samples), want %s/%s/%s n %d", i, r.Provider, r.Operation, r.Mode, r.N, len(r.SamplesMS),
				providers[i%3], w.op, w.mode, w.n)
		}
		if !(r.MinMS > 0 && r.MinMS <= r.P50MS && r.P50MS <= r.P90MS && r.P90MS <= r.P95MS && r.P95MS <= r.MaxMS && r.MinMS <= r.MeanMS && r.MeanMS <= r.MaxMS) {
			t.Errorf("result %d (%s, %s): statistics out of order: %+v", i, r.Provider, r.Operation, r)
		}
	}

	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	chart := parseSVG(t, data)
	chart.check(t, providers, []string{"first create + echo (cold)", "create + echo (time to interactive)", "burst create + echo (each)",
		"burst create + echo (wall time)", "RunCommand /bin/true", "WriteFile + ReadFile 1 MiB"})
}

// TestBenchTable checks the table with several providers: a provider
// column, and the medians as ratios of the first provider's.
func TestBenchTable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := sampleReport().writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	want := `providers local (namespaces), modal (emulator, <20ms> & "more"), 20 runs each; staggered and burst: 10 sandboxes, staggered one every 200ms

operation                            provider  n   p50       p90       p95       mean      p50 vs local
create + echo (time to interactive)  local     20  10.00 ms  18.00 ms  19.00 ms  10.50 ms  1.00×
create + echo (time to interactive)  modal     20  40.00 ms  72.00 ms  76.00 ms  42.00 ms  4.00×
RunCommand /bin/true                 local     1   0.00 ms   0.00 ms   0.00 ms   0.00 ms
RunCommand /bin/true                 modal     1   3.00 ms   3.00 ms   3.00 ms   3.00 ms
<script>alert("x")</script> & more   modal     2   1.23 ms   2.00 ms   2.00 ms   1.62 ms
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// TestBenchJSON checks the schema by parsing it back, field by field, and
// the statistics of known samples.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := sampleReport().writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	rep := parseBenchJSON(t, buf.String())
	if rep.Version != 1 || rep.N != 20 || rep.Concurrency != 10 || rep.StaggerMS != 200 || len(rep.Providers) != 2 || len(rep.Results) != 5 {
		t.Fatalf("report %+v", rep)
	}
	r := rep.Results[0]
	if r.Provider != "local" || r.Operation != "create + echo (time to interactive)" || r.Mode != "sequential" || r.N != 20 ||
		r.P50MS != 10 || r.P90MS != 18 || r.P95MS != 19 || r.MeanMS != 10.5 || r.MinMS != 1 || r.MaxMS != 20 || len(r.SamplesMS) != 20 {
		t.Errorf("first result %+v", r)
	}
	// Samples keep the order they were measured in; in milliseconds to
	// the microsecond.
	if r.SamplesMS[0] != 20 || r.SamplesMS[19] != 1 {
		t.Errorf("samples %v", r.SamplesMS)
	}
	if got := rep.Results[3].P50MS; got != 3 {
		t.Errorf("p50 of one sample of 3ms: %v", got)
	}
	if got := rep.Results[4].SamplesMS; !slices.Equal(got, []float64{1.234, 2}) {
		t.Errorf("samples %v, want [1.234 2]", got)
	}
}

// TestBenchSVG checks the chart's structure: a valid standalone SVG with
// a legend entry, a bar and a whisker per provider and operation, in the
// provider's colour, and its labels escaped.
func TestBenchSVG(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := sampleReport().writeSVG(&buf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("<script>")) || bytes.Contains(buf.Bytes(), []byte("<20ms>")) {
		t.Errorf("a label is not escaped:\n%s", buf.String())
	}
	chart := parseSVG(t, buf.Bytes())
	chart.check(t, []string{"local", "modal"}, []string{"create + echo (time to interactive)", "RunCommand /bin/true", `<script>alert("x")</script> & more`})
	if !slices.Contains(chart.texts, `modal (emulator, <20ms> & "more")`) {
		t.Errorf("no legend text for modal in %q", chart.texts)
	}
	// Bars grow with the median: modal's (40 ms) is longer than local's
	// (10 ms), and a median of 0 is an empty bar.
	op := "create + echo (time to interactive)"
	if l, m := chart.bars[[2]string{op, "local"}].width, chart.bars[[2]string{op, "modal"}].width; !(0 < l && l < m) {
		t.Errorf("bar widths: local %v, modal %v", l, m)
	}
	if w := chart.bars[[2]string{"RunCommand /bin/true", "local"}].width; w != 0 {
		t.Errorf("a bar for 0 ms is %v wide", w)
	}
	// The axis has ticks, in ms.
	if !slices.Contains(chart.texts, "1 ms") || !slices.Contains(chart.texts, "10 ms") {
		t.Errorf("no ms ticks in %q", chart.texts)
	}
}

// sampleReport is a report with known samples: local's 20 to 1 ms,
// modal's four times as long; a provider with no row; escaping to do.
func sampleReport() *benchReport {
	b := &bencher{plan: &benchPlan{n: 20, concurrency: 10, stagger: 200 * time.Millisecond}}
	local := &benchTarget{name: "local", detail: "namespaces"}
	modal := &benchTarget{name: "modal", detail: `emulator, <20ms> & "more"`}
	b.targets = []*benchTarget{local, modal}
	var l, m []time.Duration
	for i := 20; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
		m = append(m, time.Duration(4*i)*time.Millisecond)
	}
	// Added out of order: the report groups rows by operation.
	b.results = []*benchResult{
		{provider: "local", operation: "create + echo (time to interactive)", mode: "sequential", samples: l},
		{provider: "local", operation: "RunCommand /bin/true", mode: "exec", samples: []time.Duration{0}},
		{provider: "modal", operation: "create + echo (time to interactive)", mode: "sequential", samples: m},
		{provider: "modal", operation: "RunCommand /bin/true", mode: "exec", samples: []time.Duration{3 * time.Millisecond}},
		{provider: "modal", operation: `<script>alert("x")</script> & more`, mode: "exec", samples: []time.Duration{1234 * time.Microsecond, 2 * time.Millisecond}},
	}
	return b.report()
}

// benchJSON is the documented schema of bench --json, parsed strictly.
type benchJSON struct {
	Version     int     `json:"version"`
	N           int     `json:"n"`
	Concurrency int     `json:"concurrency"`
	StaggerMS   float64 `json:"stagger_ms"`
	Providers   []struct {
		Name   string `json:"name"`
		Detail string `json:"detail"`
	} `json:"providers"`
	Results []struct {
		Provider  string    `json:"provider"`
		Operation string    `json:"operation"`
		Mode      string    `json:"mode"`
		N         int       `json:"n"`
		P50MS     float64   `json:"p50_ms"`
		P90MS     float64   `json:"p90_ms"`
		P95MS     float64   `json:"p95_ms"`
		MeanMS    float64   `json:"mean_ms"`
		MinMS     float64   `json:"min_ms"`
		MaxMS     float64   `json:"max_ms"`
		SamplesMS []float64 `json:"samples_ms"`
	} `json:"results"`
}

func parseBenchJSON(t *testing.T, s string) *benchJSON {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var rep benchJSON
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("parsing the JSON: %v\n%s", err, s)
	}
	if dec.More() {
		t.Errorf("more than one JSON value:\n%s", s)
	}
	return &rep
}

// svgChart is what a test reads back from a chart.
type svgChart struct {
	root    string
	xmlns   string
	legend  []string // data-provider of each legend item
	swatch  map[string]string
	bars    map[[2]string]svgBar // by operation, provider
	texts   []string
	opOrder []string
}

type svgBar struct {
	width    float64
	fill     string
	whiskers int // lines in its whisker
	title    string
}

// parseSVG reads a chart with encoding/xml, which fails on anything
// that is not well-formed XML.
func parseSVG(t *testing.T, data []byte) *svgChart {
	t.Helper()
	c := &svgChart{swatch: map[string]string{}, bars: map[[2]string]svgBar{}}
	dec := xml.NewDecoder(bytes.NewReader(data))
	type frame struct {
		name  string
		attrs map[string]string
	}
	var stack []frame
	// find returns the innermost enclosing element with class cls.
	find := func(cls string) map[string]string {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].attrs["class"] == cls {
				return stack[i].attrs
			}
		}
		return nil
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("the chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			attrs := map[string]string{}
			for _, a := range tok.Attr {
				attrs[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				c.root, c.xmlns = tok.Name.Local, tok.Name.Space
			}
			stack = append(stack, frame{tok.Name.Local, attrs})
			op, m := find("operation"), find("measure")
			switch {
			case attrs["class"] == "legend-item":
				c.legend = append(c.legend, attrs["data-provider"])
			case tok.Name.Local == "rect" && find("legend-item") != nil:
				c.swatch[find("legend-item")["data-provider"]] = attrs["fill"]
			case attrs["class"] == "operation":
				c.opOrder = append(c.opOrder, attrs["data-operation"])
			case attrs["class"] == "bar" && op != nil && m != nil:
				w, err := strconv.ParseFloat(attrs["width"], 64)
				if err != nil {
					t.Errorf("bar width %q: %v", attrs["width"], err)
				}
				k := [2]string{op["data-operation"], m["data-provider"]}
				b := c.bars[k]
				b.width, b.fill = w, attrs["fill"]
				c.bars[k] = b
			case tok.Name.Local == "line" && find("whisker") != nil && op != nil && m != nil:
				k := [2]string{op["data-operation"], m["data-provider"]}
				b := c.bars[k]
				b.whiskers++
				c.bars[k] = b
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 || strings.TrimSpace(string(tok)) == "" {
				continue
			}
			top := stack[len(stack)-1]
			switch {
			case top.name == "text":
				c.texts = append(c.texts, string(tok))
			case top.name == "title" && find("bar") != nil:
				op, m := find("operation"), find("measure")
				k := [2]string{op["data-operation"], m["data-provider"]}
				b := c.bars[k]
				b.title = string(tok)
				c.bars[k] = b
			}
		}
	}
	return c
}

// check checks that the chart has a legend entry per provider, a group
// per operation in order, and in it a bar in the provider's colour with
// a whisker (a line and its cap) for each provider.
func (c *svgChart) check(t *testing.T, providers, ops []string) {
	t.Helper()
	if c.root != "svg" || c.xmlns != "http://www.w3.org/2000/svg" {
		t.Errorf("root element %q in namespace %q", c.root, c.xmlns)
	}
	if !slices.Equal(c.legend, providers) {
		t.Errorf("legend %q, want %q", c.legend, providers)
	}
	if !slices.Equal(c.opOrder, ops) {
		t.Errorf("operations %q, want %q", c.opOrder, ops)
	}
	colours := map[string]bool{}
	for _, p := range providers {
		colours[c.swatch[p]] = true
	}
	if len(colours) != len(providers) {
		t.Errorf("legend colours %v: not one per provider", c.swatch)
	}
	for _, op := range ops {
		if !slices.Contains(c.texts, op) {
			t.Errorf("no label %q", op)
		}
		for _, p := range providers {
			b, ok := c.bars[[2]string{op, p}]
			if !ok && op == `<script>alert("x")</script> & more` && p == "local" {
				continue // measured on modal only
			}
			if !ok || b.fill != c.swatch[p] || b.whiskers != 2 || !strings.Contains(b.title, op) {
				t.Errorf("%s, %s: bar %+v (present %v), want fill %s, 2 whisker lines, a title", op, p, b, ok, c.swatch[p])
			}
		}
	}
}
