//go:build !linux

package guest

import (
	"fmt"
	"io"
)

// The guest only ever runs inside sandboxes of the local provider, which
// exist on Linux alone; elsewhere its modes just say so.

func unsupported(w io.Writer) int {
	fmt.Fprintln(w, "modal emulator guest: needs Linux")
	return 1
}

func fsTools(_ []string, _ io.Reader, _, stderr io.Writer) int { return unsupported(stderr) }
func snapshot(_ []string, _, stderr io.Writer) int             { return unsupported(stderr) }
func restore(_ []string, _ io.Reader, stderr io.Writer) int    { return unsupported(stderr) }
