package main

import (
	"context"
	"testing"
	"time"
)

// The example runs, whole, on the local provider.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		t.Fatal(err)
	}
}
