package main

import (
	"strings"
	"testing"
)

func TestBench(t *testing.T) {
	o := cli(t, "", "bench", "-n", "2")
	if o.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", o.code, o.stderr)
	}
	for _, row := range []string{"create + echo", "RunCommand /bin/true", "RunCode python", "RunCode node", "WriteFile + ReadFile 1 MiB"} {
		if !strings.Contains(o.stdout, row) {
			t.Errorf("no %q row in:\n%s", row, o.stdout)
		}
	}
	if o := cli(t, "", "bench", "-n", "0"); o.code != 2 {
		t.Errorf("-n 0: exit %d, want 2 (usage)", o.code)
	}
}
