package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"testing"
)

// run and exec build a command tree of their own command only
// (rootCommand): what a user sees of them, help and errors, must be what
// the full tree gives.
func TestOneCommandTreeBehavesAsTheFullOne(t *testing.T) {
	for _, args := range [][]string{
		{"exec", "--help"},
		{"run", "--help"},
		{"exec", "--no-such-flag", "--", "true"},
		{"run", "--memory", "lots", "-c", "print(1)"},
		{"exec"},
		{"run"},
	} {
		// The full tree, as any other command gets it: through "help"
		// for the help texts, else by running the command from a tree
		// built for another first argument.
		var full, one bytes.Buffer
		a := &app{stdout: &full, stderr: &full, providers: defaultProviders}
		root := a.rootCommand([]string{"version"})
		root.SetArgs(args)
		root.SetOut(&full)
		root.SetErr(&full)
		_, fullErr := root.ExecuteContextC(context.Background())

		b := &app{stdout: &one, stderr: &one, providers: defaultProviders}
		root = b.rootCommand(args)
		if n := len(root.Commands()); n != 1 {
			t.Errorf("%q: the tree has %d commands, want 1", args, n)
		}
		root.SetArgs(args)
		root.SetOut(&one)
		root.SetErr(&one)
		_, oneErr := root.ExecuteContextC(context.Background())

		if full.String() != one.String() || (fullErr == nil) != (oneErr == nil) ||
			(fullErr != nil && fullErr.Error() != oneErr.Error()) {
			t.Errorf("%q: the one-command tree says\n%s(err %v)\nthe full tree\n%s(err %v)", args, one.String(), oneErr, full.String(), fullErr)
		}
	}
}

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, c := range []struct {
		gogc string
		args []string
		want int
	}{
		{"", []string{"exec", "--", "true"}, oneShotGCPercent},
		{"", []string{"run", "-c", "print(1)"}, oneShotGCPercent},
		{"", []string{"shell"}, 100},
		{"", []string{"serve"}, 100},
		{"", nil, 100},
		{"50", []string{"exec", "--", "true"}, 100}, // the user's GOGC stands
	} {
		t.Setenv("GOGC", c.gogc)
		debug.SetGCPercent(100)
		tuneGC(c.args)
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("GOGC=%q %q: GC percent %d, want %d", c.gogc, c.args, got, c.want)
		}
	}
}
