// Command interpreter uses a sandbox as a code interpreter, as an AI agent
// or a notebook does: it uploads a CSV, loads it with pandas in one cell,
// computes in the next (the DataFrame is still there), plots it with
// matplotlib and saves the chart's PNG on the host.
//
//	go run ./examples/interpreter [chart.png]
//
// It needs python3 with pandas and matplotlib (Debian: apt install
// python3-ipython python3-matplotlib python3-pandas).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// sales is the data the example analyses.
const sales = `month,region,revenue
2026-01,north,120
2026-01,south,95
2026-02,north,135
2026-02,south,110
2026-03,north,160
2026-03,south,105
`

func main() {
	chart := "chart.png"
	if len(os.Args) > 1 {
		chart = os.Args[1]
	}
	if err := run(context.Background(), os.Stdout, chart); err != nil {
		fmt.Fprintln(os.Stderr, "interpreter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, chart string) error {
	p, err := local.New(local.Options{})
	if err != nil {
		return err
	}
	defer p.Close()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		return err
	}
	defer sb.Destroy(context.Background())

	if err := sb.FileSystem().WriteFile(ctx, "sales.csv", []byte(sales)); err != nil {
		return err
	}

	// A context is a live interpreter: what one cell defines, the next
	// one sees.
	cc, err := sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: compute.Python})
	if err != nil {
		return err
	}
	defer cc.Close(context.Background())
	info := cc.Info()
	fmt.Fprintf(out, "context %s: Python %s, rich display: %v\n", info.ID, info.Version, info.Rich)

	// Cell 1: load. The last expression is the cell's value (IsMain),
	// with a text form and, for a DataFrame, an HTML table.
	ex, err := cell(ctx, cc, "import pandas as pd\ndf = pd.read_csv('sales.csv')\nlen(df)")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "rows: %s\n", ex.Main().Text)

	// Cell 2: compute with the df of cell 1; print streams to out as the
	// cell runs.
	_, err = cell(ctx, cc, `totals = df.groupby('region')['revenue'].sum()
for region, total in totals.items():
    print(f"{region}: {total}")`, &compute.CellOptions{Stdout: out})
	if err != nil {
		return err
	}

	// Cell 3: a chart. plt.show() hands the figure back as a PNG output.
	ex, err = cell(ctx, cc, `import matplotlib.pyplot as plt
df.pivot(index='month', columns='region', values='revenue').plot(marker='o', title='Revenue by region')
plt.show()`)
	if err != nil {
		return err
	}
	var png []byte
	for _, r := range ex.Results {
		if len(r.PNG) > 0 {
			png = r.PNG
		}
	}
	if png == nil {
		return errors.New("the plot cell displayed no PNG")
	}
	if err := os.WriteFile(chart, png, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "chart: %s (PNG, %d bytes)\n", chart, len(png))

	// An exception is part of the Execution, not a Go error; the context
	// goes on.
	ex, err = cc.Run(ctx, "df['profit']", nil)
	if err != nil {
		return err
	}
	if ex.Error != nil {
		fmt.Fprintf(out, "error: %s\n", ex.Error.Name)
	}
	return nil
}

// cell runs code and turns an exception into an error.
func cell(ctx context.Context, cc *compute.CodeContext, code string, opts ...*compute.CellOptions) (*compute.Execution, error) {
	var o *compute.CellOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ex, err := cc.Run(ctx, code, o)
	if err != nil {
		return nil, err
	}
	if ex.Error != nil {
		return nil, fmt.Errorf("cell raised %s\n%s", ex.Error.String(), strings.TrimSpace(ex.Error.Traceback))
	}
	return ex, nil
}
