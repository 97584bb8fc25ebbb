package cellout

import (
	"bytes"
	"errors"
	"testing"

	"github.com/computesdk-go/compute/driver"
)

type failingWriter struct{ calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	return 0, errors.New("gone")
}

func TestCollector(t *testing.T) {
	var out bytes.Buffer
	errW := &failingWriter{}
	var seen []driver.Output
	c := New(5, &out, errW, func(o driver.Output) { seen = append(seen, o) })
	c.Stdout([]byte("abc"))
	c.Stdout([]byte("defg"))
	c.Stderr([]byte("x"))
	c.Stderr([]byte("y"))
	c.Result(driver.Output{Text: "123"})
	c.Result(driver.Output{Text: "456"}) // over the 5-byte budget with the first
	c.Error(&driver.CellError{Name: "First"})
	c.Error(&driver.CellError{Name: "Second"})
	ex := c.Execution()
	if ex.Stdout != "abcde" || ex.Stderr != "xy" || !ex.Truncated {
		t.Errorf("kept stdout %q, stderr %q, truncated %v; want the first 5 bytes, all of stderr, truncated", ex.Stdout, ex.Stderr, ex.Truncated)
	}
	if out.String() != "abcdefg" {
		t.Errorf("the stdout writer got %q, want everything", out.String())
	}
	if errW.calls != 1 {
		t.Errorf("a failed writer was called %d times, want once (then no more)", errW.calls)
	}
	if len(ex.Results) != 1 || ex.Results[0].Text != "123" || len(seen) != 2 {
		t.Errorf("results kept %+v, callback saw %d; want the first kept and both seen", ex.Results, len(seen))
	}
	if ex.Error == nil || ex.Error.Name != "First" {
		t.Errorf("error %+v, want the first", ex.Error)
	}
	c.Stdout([]byte("later"))
	if ex.Stdout != "abcde" {
		t.Errorf("an Execution changed after it was returned: %q", ex.Stdout)
	}
}

func TestCollectorKeepsNothing(t *testing.T) {
	var out bytes.Buffer
	c := New(-1, &out, nil, nil)
	c.Stdout([]byte("abc"))
	c.Stderr([]byte("def"))
	c.Result(driver.Output{Text: "1"})
	ex := c.Execution()
	if ex.Stdout != "" || ex.Stderr != "" || len(ex.Results) != 0 || ex.Truncated {
		t.Errorf("negative limit kept %+v, want nothing and no truncation", ex)
	}
	if out.String() != "abc" {
		t.Errorf("the writer got %q, want everything", out.String())
	}
}

func TestCollectorDropped(t *testing.T) {
	c := New(10, nil, nil, nil)
	c.Truncated()
	if !c.Execution().Truncated {
		t.Error("Truncated did not mark the execution")
	}
}
