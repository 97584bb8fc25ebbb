package interpreter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of Session against a fake program written in Go: they need no
// interpreter and cover the protocol's edges.

type fake struct {
	s    *Session
	in   *bufio.Reader  // what the session sent
	out  *io.PipeWriter // what the program prints
	inR  *io.PipeReader
	outR *io.PipeReader
}

func newFake(t *testing.T) *fake {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	f := &fake{s: NewSession(inW, outR), in: bufio.NewReader(inR), out: outW, inR: inR, outR: outR}
	t.Cleanup(func() {
		f.out.Close()
		f.inR.Close()
	})
	return f
}

func (f *fake) say(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(f.out, l+"\n"); err != nil {
			t.Errorf("fake program write: %v", err)
		}
	}
}

func (f *fake) next(t *testing.T) frame {
	t.Helper()
	line, err := f.in.ReadBytes('\n')
	if err != nil {
		t.Fatalf("fake program read: %v", err)
	}
	var fr frame
	if err := json.Unmarshal(line, &fr); err != nil {
		t.Fatalf("fake program got %q: %v", line, err)
	}
	return fr
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCommand(t *testing.T) {
	for _, rt := range []string{"python", "node"} {
		argv, err := Command(rt)
		if err != nil {
			t.Fatal(err)
		}
		src := argv[len(argv)-1]
		if len(src) > 100<<10 {
			t.Errorf("%s program is %d bytes, over 100 KiB", rt, len(src))
		}
	}
	if _, err := Command("ruby"); err == nil {
		t.Error("Command(ruby) succeeded")
	}
}

func TestFakeProtocol(t *testing.T) {
	f := newFake(t)
	f.say(t, `{"type":"ready","runtime":"python","version":"3.11.2","rich":true,"mode":"ipython","pid":42}`)
	r, err := f.s.Ready(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if *r != (Ready{Runtime: "python", Version: "3.11.2", Rich: true, PID: 42}) {
		t.Errorf("ready = %+v", r)
	}

	var got []Output
	var outs strings.Builder
	done := make(chan struct{})
	var ex *Execution
	go func() {
		defer close(done)
		ex, err = f.s.Run(ctxT(t, 10*time.Second), "x", &RunOptions{Stdout: &outs, OnResult: func(o Output) { got = append(got, o) }})
	}()
	fr := f.next(t)
	if fr.Type != "execute" || fr.Code != "x" {
		t.Fatalf("got %+v", fr)
	}
	id := fr.ID
	f.say(t,
		fmt.Sprintf(`{"type":"stream","id":%d,"name":"stdout","data":"aGkK"}`, id),
		fmt.Sprintf(`{"type":"stream","id":%d,"name":"stdout","data":"c3RhbGUK"}`, id+100), // another cell's: dropped
		fmt.Sprintf(`{"type":"result","id":%d,"main":false,"data":{"text/plain":"p","image/png":"iVBORw0KGgo=","application/json":{"a":1},"x/unknown":3,"text/html":5}}`, id),
		fmt.Sprintf(`{"type":"future-kind","id":%d}`, id),
		fmt.Sprintf(`{"type":"error","id":%d,"name":"E","value":"v","traceback":"tb"}`, id),
		fmt.Sprintf(`{"type":"result","id":%d,"main":true,"data":{"text/plain":"2"}}`, id),
		fmt.Sprintf(`{"type":"end","id":%d}`, id))
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if ex.Stdout != "hi\n" || outs.String() != "hi\n" {
		t.Errorf("stdout %q, writer %q", ex.Stdout, outs.String())
	}
	if len(ex.Results) != 2 || len(got) != 2 {
		t.Fatalf("results %+v", ex.Results)
	}
	r0 := ex.Results[0]
	if r0.Text != "p" || string(r0.PNG) != "\x89PNG\r\n\x1a\n" || string(r0.JSON) != `{"a":1}` || r0.HTML != "" || r0.IsMain {
		t.Errorf("result 0 = %+v", r0)
	}
	if !ex.Results[1].IsMain || ex.Results[1].Text != "2" {
		t.Errorf("result 1 = %+v", ex.Results[1])
	}
	if ex.Error == nil || *ex.Error != (CellError{Name: "E", Value: "v", Traceback: "tb"}) {
		t.Errorf("error = %+v", ex.Error)
	}
}

func TestFakeMalformedFrame(t *testing.T) {
	for _, bad := range []string{
		`this is not json`,
		`{"type":"stream","id":1,"name":"stdout","data":"!!not base64!!"}`,
		`{"type":"result","id":1,"data":"not a bundle"}`,
	} {
		t.Run("", func(t *testing.T) {
			f := newFake(t)
			done := make(chan error, 1)
			go func() {
				_, err := f.s.Run(ctxT(t, 10*time.Second), "x", nil)
				done <- err
			}()
			f.next(t)
			f.say(t, bad)
			err := <-done
			if !errors.Is(err, ErrDied) {
				t.Fatalf("Run = %v, want ErrDied", err)
			}
			if _, err := f.s.Run(ctxT(t, time.Second), "y", nil); !errors.Is(err, ErrDied) {
				t.Errorf("Run after death = %v", err)
			}
			if _, err := f.s.Ready(ctxT(t, time.Second)); !errors.Is(err, ErrDied) {
				t.Errorf("Ready after death = %v", err)
			}
		})
	}
}

func TestFakeEOF(t *testing.T) {
	f := newFake(t)
	done := make(chan error, 1)
	go func() {
		_, err := f.s.Run(ctxT(t, 10*time.Second), "x", nil)
		done <- err
	}()
	f.next(t)
	f.out.Close()
	if err := <-done; !errors.Is(err, ErrDied) {
		t.Fatalf("Run = %v, want ErrDied", err)
	}
}

func TestFakeExitMessage(t *testing.T) {
	f := newFake(t)
	f.say(t, `{"type":"exit","code":3,"signal":null}`)
	_, err := f.s.Ready(ctxT(t, 10*time.Second))
	if !errors.Is(err, ErrDied) || !strings.Contains(err.Error(), "status 3") {
		t.Fatalf("Ready = %v", err)
	}
}

func TestFakeOversizedFrame(t *testing.T) {
	old := maxFrame
	maxFrame = 1 << 10
	t.Cleanup(func() { maxFrame = old })
	f := newFake(t)
	done := make(chan struct{})
	var ex *Execution
	var err error
	go func() {
		defer close(done)
		ex, err = f.s.Run(ctxT(t, 10*time.Second), "x", nil)
	}()
	id := f.next(t).ID
	f.say(t,
		fmt.Sprintf(`{"type":"result","id":%d,"main":true,"data":{"text/plain":"%s"}}`, id, strings.Repeat("a", 100<<10)),
		fmt.Sprintf(`{"type":"result","id":%d,"main":true,"data":{"text/plain":"small"}}`, id),
		fmt.Sprintf(`{"type":"end","id":%d}`, id))
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Truncated || len(ex.Results) != 1 || ex.Results[0].Text != "small" {
		t.Errorf("got %+v", ex)
	}
}

func TestFakeCap(t *testing.T) {
	f := newFake(t)
	done := make(chan struct{})
	var ex *Execution
	var err error
	var w strings.Builder
	n := 0
	go func() {
		defer close(done)
		ex, err = f.s.Run(ctxT(t, 10*time.Second), "x", &RunOptions{MaxOutput: 5, Stdout: &w, OnResult: func(Output) { n++ }})
	}()
	id := f.next(t).ID
	f.say(t,
		fmt.Sprintf(`{"type":"stream","id":%d,"name":"stdout","data":"MDEyMzQ1Njc4OQ=="}`, id),
		fmt.Sprintf(`{"type":"stream","id":%d,"name":"stderr","data":"YWI="}`, id),
		fmt.Sprintf(`{"type":"result","id":%d,"main":false,"data":{"text/plain":"abcdefg"}}`, id),
		fmt.Sprintf(`{"type":"result","id":%d,"main":false,"data":{"text/plain":"abc"}}`, id),
		fmt.Sprintf(`{"type":"end","id":%d}`, id))
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if ex.Stdout != "01234" || ex.Stderr != "ab" || !ex.Truncated || w.String() != "0123456789" {
		t.Errorf("got %+v, writer %q", ex, w.String())
	}
	if len(ex.Results) != 1 || ex.Results[0].Text != "abc" || n != 2 {
		t.Errorf("results %+v, OnResult called %d times", ex.Results, n)
	}
}

// A program that ignores the interrupt: Run gives up after the grace period
// and the session is dead.
func TestFakeInterruptIgnored(t *testing.T) {
	old := interruptGrace
	interruptGrace = 100 * time.Millisecond
	t.Cleanup(func() { interruptGrace = old })
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.s.Run(ctx, "x", nil)
		done <- err
	}()
	f.next(t)
	cancel()
	if fr := f.next(t); fr.Type != "interrupt" {
		t.Fatalf("got %+v, want an interrupt", fr)
	}
	err := <-done
	if !errors.Is(err, ErrDied) || !errors.Is(err, ErrNotStopped) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want ErrDied, ErrNotStopped and Canceled", err)
	}
}

// A program that honours the interrupt: Run returns ctx.Err() and the
// session stays usable.
func TestFakeInterruptHonoured(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		ex, err := f.s.Run(ctx, "x", nil)
		if err == nil && (ex.Error == nil || ex.Error.Name != "KeyboardInterrupt") {
			err = fmt.Errorf("execution %+v", ex)
		}
		done <- err
	}()
	id := f.next(t).ID
	cancel()
	if fr := f.next(t); fr.Type != "interrupt" || fr.ID != id {
		t.Fatalf("got %+v, want an interrupt of %d", fr, id)
	}
	f.say(t, fmt.Sprintf(`{"type":"error","id":%d,"name":"KeyboardInterrupt","value":"","traceback":""}`, id),
		fmt.Sprintf(`{"type":"end","id":%d}`, id))
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want Canceled", err)
	}
	if f.s.Err() != nil {
		t.Fatalf("session dead: %v", f.s.Err())
	}
}

// Concurrent Runs take turns: the second cell is sent only after the first
// ended.
func TestFakeSerialized(t *testing.T) {
	f := newFake(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.s.Run(ctxT(t, 10*time.Second), "x", nil)
			errs <- err
		}()
	}
	for i := 0; i < 2; i++ {
		fr := f.next(t)
		if fr.Type != "execute" {
			t.Fatalf("got %+v", fr)
		}
		f.say(t, fmt.Sprintf(`{"type":"end","id":%d}`, fr.ID))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestFakeClose(t *testing.T) {
	f := newFake(t)
	go func() {
		_ = f.s.Close()
	}()
	if fr := f.next(t); fr.Type != "shutdown" {
		t.Fatalf("got %+v", fr)
	}
	if _, err := f.in.ReadByte(); err != io.EOF {
		t.Errorf("stdin not closed: %v", err)
	}
	if _, err := f.s.Run(ctxT(t, time.Second), "x", nil); !errors.Is(err, ErrDied) {
		t.Errorf("Run after Close = %v", err)
	}
}
