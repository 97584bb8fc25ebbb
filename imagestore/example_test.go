//go:build linux

package imagestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/computesdk-go/compute/imagestore"
)

func ExampleStore_Pull() {
	// An OCI layout with a random two-layer image stands in for a
	// registry ("python:3.12-slim") here.
	tmp, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(tmp)
	img, _ := random.Image(1024, 2)
	p, _ := layout.Write(filepath.Join(tmp, "layout"), empty.Index)
	p.AppendImage(img)

	s, err := imagestore.Open(filepath.Join(tmp, "images")) // imagestore.DefaultDir() in real use
	if err != nil {
		fmt.Println(err)
		return
	}
	im, err := s.Pull(context.Background(), "oci:"+filepath.Join(tmp, "layout"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Bottom to top; overlayfs's lowerdir option wants them top first.
	fmt.Println(len(im.LayerDirs()), "layers")

	// A second pull finds every layer in the store.
	again, _ := s.Pull(context.Background(), "oci:"+filepath.Join(tmp, "layout"), &imagestore.PullOptions{
		Progress: func(p imagestore.Progress) {
			if p.Done {
				fmt.Println(p.LayersDone, "of", p.Layers, "layers in the store")
			}
		},
	})
	fmt.Println(again.ID == im.ID)
	// Output:
	// 2 layers
	// 2 of 2 layers in the store
	// true
}
