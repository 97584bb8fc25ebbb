package interpreter

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The protocol's pipes are private: a subprocess of a cell has neither.
func TestPrivateFDs(t *testing.T) {
	t.Run("python", func(t *testing.T) {
		needPython(t)
		testPrivateFDs(t, hostArgv(t, "python", "-S"), "import os\nos.system('ls -l /proc/self/fd')")
	})
	t.Run("node", func(t *testing.T) {
		needNode(t)
		testPrivateFDs(t, hostArgv(t, "node"), "require('child_process').execSync('ls -l /proc/self/fd', {stdio: 'inherit'}); 0")
	})
}

func testPrivateFDs(t *testing.T, argv []string, code string) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var pipes []string
	for _, f := range []*os.File{inR, outW} {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, fmt.Sprintf("pipe:[%d]", fi.Sys().(*syscall.Stat_t).Ino))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout = inR, outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	s := NewSession(inW, outR)
	defer func() {
		s.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		outR.Close()
	}()
	ex, err := s.Run(ctxT(t, 120*time.Second), code, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Error != nil || !strings.Contains(ex.Stdout, "/proc/") {
		t.Fatalf("%+v", ex)
	}
	for _, p := range pipes {
		if strings.Contains(ex.Stdout, p) {
			t.Errorf("a subprocess has the protocol's %s:\n%s", p, ex.Stdout)
		}
	}
}
