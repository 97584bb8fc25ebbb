package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// benchReport is what compute bench --json prints; its fields are a
// stable schema, documented in docs/cli.md (version 1). New fields may be
// added; none is renamed or removed without a new version.
type benchReport struct {
	// Version is the schema's version: 1.
	Version int `json:"version"`
	// N is -n, Concurrency --concurrency and StaggerMS --stagger.
	N           int     `json:"n"`
	Concurrency int     `json:"concurrency"`
	StaggerMS   float64 `json:"stagger_ms"`
	// Providers are the providers measured, in the order of --provider.
	Providers []benchProviderJSON `json:"providers"`
	// Results are the rows: operation after operation, each for every
	// provider in order.
	Results []benchRowJSON `json:"results"`
}

// benchProviderJSON names a provider and says how it ran.
type benchProviderJSON struct {
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
}

// benchRowJSON is one operation on one provider, times in milliseconds.
// Percentiles are nearest-rank: the sample below which that share of the
// samples lies.
type benchRowJSON struct {
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
	SamplesMS []float64 `json:"samples_ms,omitempty"`
}

func (b *bencher) report() *benchReport {
	r := &benchReport{
		Version:     1,
		N:           b.plan.n,
		Concurrency: b.plan.concurrency,
		StaggerMS:   msFloat(b.plan.stagger),
	}
	for _, t := range b.targets {
		r.Providers = append(r.Providers, benchProviderJSON{Name: t.name, Detail: t.detail})
	}
	// Operation after operation, in the order they were first measured
	// (a burst adds two rows per provider), providers in order within each.
	var ops []string
	for _, res := range b.results {
		if !slices.Contains(ops, res.operation) {
			ops = append(ops, res.operation)
		}
	}
	for _, op := range ops {
		for _, t := range b.targets {
			for _, res := range b.results {
				if res.operation == op && res.provider == t.name {
					r.Results = append(r.Results, summarize(res))
				}
			}
		}
	}
	return r
}

func summarize(res *benchResult) benchRowJSON {
	s := slices.Clone(res.samples)
	slices.Sort(s)
	row := benchRowJSON{Provider: res.provider, Operation: res.operation, Mode: res.mode, N: len(s)}
	if len(s) == 0 {
		return row
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	row.P50MS = msFloat(percentile(s, 50))
	row.P90MS = msFloat(percentile(s, 90))
	row.P95MS = msFloat(percentile(s, 95))
	row.MeanMS = msFloat(sum / time.Duration(len(s)))
	row.MinMS = msFloat(s[0])
	row.MaxMS = msFloat(s[len(s)-1])
	for _, d := range res.samples {
		row.SamplesMS = append(row.SamplesMS, msFloat(d))
	}
	return row
}

// percentile is the nearest-rank percentile p of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[max(i-1, 0)]
}

// msFloat is d in milliseconds, to the microsecond.
func msFloat(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

func (r *benchReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// label is a provider's name with how it ran: "modal (emulator,
// 20ms per RPC)".
func (p benchProviderJSON) label() string {
	if p.Detail == "" {
		return p.Name
	}
	return p.Name + " (" + p.Detail + ")"
}

// writeTable prints the rows; with several providers, a provider column
// and each median as a ratio of the first provider's.
func (r *benchReport) writeTable(w io.Writer) error {
	var labels []string
	for _, p := range r.Providers {
		labels = append(labels, p.label())
	}
	if len(r.Providers) == 1 {
		fmt.Fprintf(w, "provider %s, %d runs each", labels[0], r.N)
	} else {
		fmt.Fprintf(w, "providers %s, %d runs each", strings.Join(labels, ", "), r.N)
	}
	fmt.Fprintf(w, "; staggered and burst: %d sandboxes, staggered one every %v\n\n", r.Concurrency, time.Duration(r.StaggerMS*float64(time.Millisecond)))

	several := len(r.Providers) > 1
	first := map[string]float64{} // operation -> the first provider's p50
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "operation\t"
	if several {
		head += "provider\t"
	}
	head += "n\tp50\tp90\tp95\tmean"
	if several {
		head += "\tp50 vs " + r.Providers[0].Name
	}
	fmt.Fprintln(tw, head)
	for _, row := range r.Results {
		line := row.Operation + "\t"
		if several {
			line += row.Provider + "\t"
		}
		line += fmt.Sprintf("%d\t%s\t%s\t%s\t%s", row.N, fmtMS(row.P50MS), fmtMS(row.P90MS), fmtMS(row.P95MS), fmtMS(row.MeanMS))
		if several {
			if row.Provider == r.Providers[0].Name {
				first[row.Operation] = row.P50MS
			}
			if base, ok := first[row.Operation]; ok && base > 0 {
				line += fmt.Sprintf("\t%.2f×", row.P50MS/base)
			}
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func fmtMS(ms float64) string { return fmt.Sprintf("%.2f ms", ms) }
