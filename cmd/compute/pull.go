package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local"
)

// pullWithProgress pulls image into this machine's store before a local
// sandbox is created from it, with a progress bar, when standard error is
// a terminal and the store does not have the image yet; the local
// provider then finds it there. Elsewhere (no terminal, another provider,
// no image) it does nothing and the provider fetches the image itself.
func (a *app) pullWithProgress(ctx context.Context, p provider, image string) error {
	if image == "" {
		return nil
	}
	if _, ok := p.(*local.Provider); !ok {
		return nil
	}
	bar := newProgressBar(a.stderr)
	if bar == nil {
		return nil
	}
	s, err := openImageStore()
	if err != nil {
		return nil // the provider reports what is wrong with the store
	}
	if _, err := s.Get(image); err == nil || !errors.Is(err, imagestore.ErrNotFound) {
		return nil
	}
	notes := &noteHandler{w: a.stderr, clearLine: "\r\x1b[K"}
	_, err = s.Pull(ctx, image, &imagestore.PullOptions{Progress: bar.update, Logger: slog.New(notes)})
	bar.finish()
	if err != nil {
		return fmt.Errorf("pulling image %s: %w", image, err)
	}
	return nil
}
