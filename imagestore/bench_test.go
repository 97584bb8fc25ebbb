//go:build linux

package imagestore

import (
	"context"
	"os"
	"strings"
	"testing"
)

// BenchmarkPull compares a first pull of a small image (two layers,
// about 1 MiB unpacked, from an in-process registry) with a pull of the
// same image when the store has it: a tag resolution and no blob
// download.
func BenchmarkPull(b *testing.B) {
	reg := newRegistry(b)
	var files []entry
	for i := range 64 {
		files = append(files, file("usr/lib/f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), strings.Repeat("data", 4096)))
	}
	ref := reg.push(b, "bench:1", imageOf(b, "", layerOf(b, files...), layerOf(b, file("app/main.py", "print(1)"))))
	ctx := context.Background()
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir, _ := os.MkdirTemp("", "imagestore-bench-")
			s, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			removeAll(dir)
			b.StartTimer()
		}
	})
	b.Run("cached", func(b *testing.B) {
		dir := b.TempDir()
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			b.Fatal(err)
		}
		reg.blobGets.Store(0)
		for b.Loop() {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				b.Fatal(err)
			}
		}
		if n := reg.blobGets.Load(); n != 0 {
			b.Errorf("cached pulls downloaded %d blobs", n)
		}
		b.StopTimer()
		removeAll(dir)
	})
}
