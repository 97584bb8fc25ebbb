package main

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The example runs, whole, on the local provider. Its output shows the
// training (ten epochs, the loss going down), the fit against the closed
// form, and the model read back from the sandbox's file: the same numbers
// the script printed.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	num := `(-?\d+\.\d+)`
	epochs := ""
	for i := 1; i <= 10; i++ {
		epochs += fmt.Sprintf("Epoch %d, Loss: %s\n", i, num)
	}
	want := regexp.MustCompile(`^Loaded 200 samples
` + epochs + `SGD: +w=` + num + ` b=` + num + `
Closed form: +w=` + num + ` b=` + num + `
Model saved!
Model saved: true
Model: y = ` + num + `x \+ ` + num + ` \(loss ` + num + `\)
$`)
	m := want.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
	f := make([]float64, len(m))
	for i, s := range m[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		f[i+1] = v
	}
	losses := f[1:11]
	sgdW, sgdB, exactW, exactB := f[11], f[12], f[13], f[14]
	modelW, modelB, modelLoss := f[15], f[16], f[17]
	for i := 1; i < len(losses); i++ {
		if losses[i] >= losses[i-1] {
			t.Errorf("loss went from %v to %v at epoch %d; want it to fall every epoch", losses[i-1], losses[i], i+1)
		}
	}
	if exactW < 2.9 || exactW > 3.1 || exactB < 1.9 || exactB > 2.1 {
		t.Errorf("closed form w=%v b=%v; want about y = 3x + 2, the data's line", exactW, exactB)
	}
	// The model file holds what the script trained and printed.
	// (Printed with 2 decimals against the script's 3 and 4.)
	if math.Abs(modelW-sgdW) > 0.0051 || math.Abs(modelB-sgdB) > 0.0051 || math.Abs(modelLoss-losses[9]) > 0.00005 {
		t.Errorf("model read back: w=%v b=%v loss=%v; want the script's w=%v b=%v and last loss %v", modelW, modelB, modelLoss, sgdW, sgdB, losses[9])
	}
}
