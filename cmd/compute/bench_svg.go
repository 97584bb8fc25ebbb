package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
)

// benchColours are the providers' colours, in --provider order (the
// Okabe-Ito palette, which readers with colour blindness tell apart).
var benchColours = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// The chart's geometry, in pixels.
const (
	svgWidth    = 960
	svgPad      = 16  // around everything
	svgBarH     = 14  // one provider's bar
	svgBarGap   = 3   // between the bars of one operation
	svgGroupGap = 12  // between operations
	svgValueW   = 110 // right of the plot, for the values
	svgFont     = 12
)

// writeBenchSVG writes the report as a chart to the file name.
func writeBenchSVG(name string, r *benchReport) error {
	var buf bytes.Buffer
	if err := r.writeSVG(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing the chart: %w", err)
	}
	return nil
}

// writeSVG draws the report as a standalone SVG: one group of horizontal
// bars per operation, one bar per provider (its median), a whisker from
// the median to the 95th percentile, on a logarithmic axis in
// milliseconds, so that operations a hundred times apart fit one chart
// and equal ratios look equal. Every label is text the encoder escapes.
func (r *benchReport) writeSVG(w io.Writer) error {
	// Operations in order of first appearance; values by operation and
	// provider.
	var ops []string
	rows := map[[2]string]benchRowJSON{}
	lo, hi := math.Inf(1), 0.0
	for _, row := range r.Results {
		if !slices.Contains(ops, row.Operation) {
			ops = append(ops, row.Operation)
		}
		rows[[2]string{row.Operation, row.Provider}] = row
		for _, v := range []float64{row.P50MS, row.P95MS} {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 { // nothing measured, or nothing took time
		lo, hi = 1, 10
	}
	// The axis starts a little below the smallest value, so that its bar shows.
	axisLo, axisHi := niceBelow(lo/1.5), niceAbove(hi)
	if axisHi <= axisLo {
		axisHi = niceAbove(axisLo * 1.01)
	}

	labelW := 0
	for _, op := range ops {
		labelW = max(labelW, len([]rune(op)))
	}
	labelW = min(max(labelW*7+svgPad, 120), 380)
	x0 := float64(svgPad + labelW)
	x1 := float64(svgWidth - svgPad - svgValueW)
	x := func(v float64) float64 {
		v = math.Min(math.Max(v, axisLo), axisHi)
		return x0 + (math.Log10(v)-math.Log10(axisLo))/(math.Log10(axisHi)-math.Log10(axisLo))*(x1-x0)
	}

	n := max(len(r.Providers), 1)
	groupH := n*svgBarH + (n-1)*svgBarGap
	titleY := svgPad + svgFont
	legendY := titleY + 14
	plotTop := legendY + svgFont + 18
	plotBottom := plotTop + len(ops)*(groupH+svgGroupGap)
	height := plotBottom + 2*svgFont + 22 + svgPad

	s := &svgWriter{enc: xml.NewEncoder(w)}
	io.WriteString(w, xml.Header)
	s.start("svg", "xmlns", "http://www.w3.org/2000/svg", "width", itoa(svgWidth), "height", itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", svgWidth, height),
		"font-family", "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif", "font-size", itoa(svgFont))
	s.elem("title", "compute bench: median (bar) and 95th percentile (whisker) by operation and provider")
	// A white ground, so that the chart reads on dark pages too.
	s.elem("rect", "", "width", "100%", "height", "100%", "fill", "#ffffff")
	s.elem("text", fmt.Sprintf("compute bench: p50 (bar) and p95 (whisker), ms, log scale; %d runs each", r.N),
		"x", itoa(svgPad), "y", itoa(titleY), "font-weight", "bold", "fill", "#222222")

	// The legend: a swatch and a label per provider.
	s.start("g", "class", "legend")
	lx := svgPad
	for i, p := range r.Providers {
		s.start("g", "class", "legend-item", "data-provider", p.Name)
		s.elem("rect", "", "x", itoa(lx), "y", itoa(legendY), "width", "12", "height", "12", "fill", benchColour(i))
		s.elem("text", p.label(), "x", itoa(lx+16), "y", itoa(legendY+10), "fill", "#222222")
		s.end("g")
		lx += 16 + len([]rune(p.label()))*7 + 20
	}
	s.end("g")

	// Grid lines and tick labels at 1, 2 and 5 of each decade (1 alone
	// past three decades).
	s.start("g", "class", "axis")
	few := math.Log10(axisHi/axisLo) > 3
	for d := math.Pow(10, math.Floor(math.Log10(axisLo)+1e-9)); d <= axisHi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v < axisLo*0.9999 || v > axisHi*1.0001 || (m != 1 && few) {
				continue
			}
			xv := fmtF(x(v))
			s.elem("line", "", "x1", xv, "x2", xv, "y1", itoa(plotTop-4), "y2", itoa(plotBottom), "stroke", "#dddddd")
			s.elem("text", fmtTick(v), "x", xv, "y", itoa(plotBottom+svgFont+4), "text-anchor", "middle", "fill", "#444444")
		}
	}
	s.elem("line", "", "x1", fmtF(x0), "x2", fmtF(x0), "y1", itoa(plotTop-4), "y2", itoa(plotBottom), "stroke", "#888888")
	s.elem("text", "milliseconds (log scale)", "x", fmtF((x0+x1)/2), "y", itoa(plotBottom+2*svgFont+12), "text-anchor", "middle", "fill", "#444444")
	s.end("g")

	// The bars, operation by operation.
	for gi, op := range ops {
		top := plotTop + gi*(groupH+svgGroupGap)
		s.start("g", "class", "operation", "data-operation", op)
		s.elem("text", op, "x", fmtF(x0-8), "y", fmtF(float64(top)+float64(groupH)/2+4), "text-anchor", "end", "fill", "#222222")
		for pi, p := range r.Providers {
			row, ok := rows[[2]string{op, p.Name}]
			if !ok {
				continue // this provider did not measure it
			}
			y := top + pi*(svgBarH+svgBarGap)
			mid := fmtF(float64(y) + svgBarH/2)
			s.start("g", "class", "measure", "data-provider", p.Name)
			s.start("rect", "class", "bar", "x", fmtF(x0), "y", itoa(y), "width", fmtF(x(row.P50MS)-x0), "height", itoa(svgBarH), "fill", benchColour(pi))
			s.elem("title", fmt.Sprintf("%s, %s: p50 %s, p95 %s, n %d", p.label(), op, fmtMS(row.P50MS), fmtMS(row.P95MS), row.N))
			s.end("rect")
			s.start("g", "class", "whisker", "stroke", "#333333", "stroke-width", "1.5")
			s.elem("line", "", "x1", fmtF(x(row.P50MS)), "x2", fmtF(x(row.P95MS)), "y1", mid, "y2", mid)
			s.elem("line", "", "x1", fmtF(x(row.P95MS)), "x2", fmtF(x(row.P95MS)), "y1", itoa(y+2), "y2", itoa(y+svgBarH-2))
			s.end("g")
			s.elem("text", fmtValue(row.P50MS), "class", "value", "x", fmtF(math.Max(x(row.P95MS), x0)+6), "y", itoa(y+svgBarH-3), "fill", "#222222")
			s.end("g")
		}
		s.end("g")
	}
	s.end("svg")
	if err := s.enc.Flush(); err != nil && s.err == nil {
		s.err = err
	}
	if s.err == nil {
		_, s.err = io.WriteString(w, "\n")
	}
	return s.err
}

// niceBelow and niceAbove round v down and up to 1, 2 or 5 times a power
// of ten: the ends of the axis.
func niceBelow(v float64) float64 {
	d := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if d*m <= v*1.0001 {
			return d * m
		}
	}
	return d
}

func niceAbove(v float64) float64 {
	d := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if d*m >= v*0.9999 {
			return d * m
		}
	}
	return d * 10
}

func benchColour(i int) string { return benchColours[i%len(benchColours)] }

// fmtTick writes an axis value: "0.5 ms", "20 ms", "1 s".
func fmtTick(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'g', 3, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'g', 3, 64) + " ms"
}

// fmtValue writes a bar's value to about three significant digits.
func fmtValue(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

func fmtF(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
func itoa(i int) string     { return strconv.Itoa(i) }

// svgWriter writes elements through an xml.Encoder, which escapes every
// attribute and text, and keeps the first error.
type svgWriter struct {
	enc *xml.Encoder
	err error
}

// start opens an element with attributes given as name, value pairs.
func (s *svgWriter) start(name string, attrs ...string) {
	e := xml.StartElement{Name: xml.Name{Local: name}}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
	}
	s.token(e)
}

func (s *svgWriter) end(name string) { s.token(xml.EndElement{Name: xml.Name{Local: name}}) }

// elem writes a whole element with text (none when empty).
func (s *svgWriter) elem(name, text string, attrs ...string) {
	s.start(name, attrs...)
	if text != "" {
		s.token(xml.CharData(text))
	}
	s.end(name)
}

func (s *svgWriter) token(t xml.Token) {
	if s.err == nil {
		s.err = s.enc.EncodeToken(t)
	}
}
