package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/computesdk-go/compute/imagestore"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Pull, list and remove the OCI images kept on this machine",
		Long: `Manage this machine's image store: OCI images pulled once, checked against
their digests and unpacked layer by layer, for sandboxes to use as their
read-only root.

The store is $COMPUTE_CACHE_DIR when set, otherwise compute/images in the
user's cache directory (~/.cache on Linux). Registry credentials come
from the Docker config (~/.docker/config.json and its credential helpers).`,
		Example: `  compute image pull python:3.12-slim
  compute image pull ghcr.io/org/img:tag --platform linux/arm64
  compute image pull oci:./layout:v1
  compute image pull docker-archive:saved.tar
  compute image list
  compute image rm python:3.12-slim
  compute image prune`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.imagePullCommand(), a.imageListCommand(), a.imageRmCommand(), a.imagePruneCommand())
	return cmd
}

// openImageStore opens the store in imagestore.DefaultDir.
func openImageStore() (*imagestore.Store, error) {
	dir, err := imagestore.DefaultDir()
	if err != nil {
		return nil, err
	}
	return imagestore.Open(dir)
}

func (a *app) imagePullCommand() *cobra.Command {
	var platform, maxSize string
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image into the store and print its id",
		Long: `Pull an image into this machine's store and print its id (the digest of
its config) on standard output.

REF is a registry reference (python:3.12-slim, ghcr.io/org/img:tag,
name@sha256:...), an OCI layout (oci:DIR or oci:DIR:TAG) or a docker save
archive (docker-archive:FILE). From a multi-platform image, this machine's
platform is picked unless --platform names another. Layers already in the
store are not downloaded again. Plain HTTP is used only for a registry on
this machine (localhost, 127.0.0.1, ::1). On a terminal, standard error
shows the progress.`,
		Example: `  compute image pull python:3.12-slim
  compute image pull --platform linux/arm64 ghcr.io/org/img:tag
  compute image pull oci:./layout:v1`,
		Args: wantArgs("one image reference", 1, 1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			notes := &noteHandler{w: a.stderr}
			o := &imagestore.PullOptions{Platform: platform, Logger: slog.New(notes)}
			if maxSize != "" {
				n, err := parseSize(maxSize)
				if err != nil {
					return usagef("--max-size %q: %v", maxSize, err)
				}
				o.MaxSize = n
			}
			s, err := openImageStore()
			if err != nil {
				return err
			}
			bar := newProgressBar(a.stderr)
			if bar != nil {
				o.Progress = bar.update
				notes.clearLine = "\r\x1b[K" // over the bar, which redraws below
			}
			im, err := s.Pull(cmd.Context(), args[0], o)
			if bar != nil {
				bar.finish()
			}
			if err != nil {
				if cmd.Context().Err() != nil {
					a.errorf("pull of %s interrupted; nothing half-made was kept", args[0])
					return exitStatus(exitInterrupted)
				}
				return err
			}
			fmt.Fprintln(a.stdout, im.ID)
			return nil
		}),
	}
	cmd.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] to pick from a multi-platform image (default: this machine's)")
	cmd.Flags().StringVar(&maxSize, "max-size", "", "refuse an image whose layers unpack to more than this, as 512m or 20g (default 16g)")
	return cmd
}

func (a *app) imageListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the images in the store",
		Long: `List the images in this machine's store, newest first: the references
that name each, its platform, id, unpacked size and when it was pulled.
Images the local provider built from --image-step/--dockerfile steps are
listed as "BASE + N steps" (a cache: prune removes those no sandbox uses).`,
		Example: `  compute image list
  compute image list --json`,
		Args: noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			s, err := openImageStore()
			if err != nil {
				return err
			}
			images, err := s.List()
			if err != nil {
				return err
			}
			if asJSON {
				type jsonImage struct {
					Refs     []string          `json:"refs"`
					ID       string            `json:"id"`
					Digest   string            `json:"digest,omitempty"`
					Platform string            `json:"platform"`
					Size     int64             `json:"size"`
					Layers   int               `json:"layers"`
					Pulled   time.Time         `json:"pulled"`
					Config   imagestore.Config `json:"config"`
					Build    *imagestore.Build `json:"build,omitempty"`
				}
				out := []jsonImage{}
				for _, im := range images {
					out = append(out, jsonImage{Refs: orEmpty(im.Refs), ID: im.ID, Digest: im.Digest, Platform: im.Platform,
						Size: im.Size, Layers: len(im.Layers), Pulled: im.Pulled, Config: im.Config, Build: im.Build})
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tPLATFORM\tID\tSIZE\tPULLED")
			for _, im := range images {
				refs := im.Refs
				if len(refs) == 0 && im.Build != nil {
					refs = []string{fmt.Sprintf("%s + %d steps", im.Build.Base, len(im.Build.Steps))}
				}
				if len(refs) == 0 {
					refs = []string{"<none>"}
				}
				for _, r := range refs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r, im.Platform, shortImageID(im.ID), formatSize(im.Size), im.Pulled.Local().Format("2006-01-02 15:04"))
				}
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the images as JSON")
	return cmd
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *app) imageRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove images from the store",
		Long: `Remove each reference from the store, with the image it named when no
other reference names it, and the layers no other image uses. A REF may
also be an image id or the start of one (as compute image list shows it),
which removes the image and every reference to it. An image that a
running sandbox uses is not removed. Exits 1 if any REF was not removed.`,
		Example: `  compute image rm python:3.12-slim
  compute image rm 3f2a9c1b7d4e`,
		Args: wantArgs("one or more image references or ids", 1, -1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			s, err := openImageStore()
			if err != nil {
				return err
			}
			failed := 0
			for _, ref := range args {
				if err := s.Remove(cmd.Context(), ref); err != nil {
					failed++
					a.errorf("%v", err)
					continue
				}
				fmt.Fprintf(a.stdout, "removed %s\n", ref)
			}
			if failed > 0 {
				return exitStatus(exitFailure)
			}
			return nil
		}),
	}
}

func (a *app) imagePruneCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove what no image reference needs",
		Long: `Remove images that no reference names any more (a tag pulled again after
it moved leaves its old image unnamed), images built from image steps
(the next create with those steps builds them again), layers that no image
uses, and whatever interrupted pulls and builds left behind. Images that
running sandboxes use are kept.`,
		Example: `  compute image prune`,
		Args:    noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			s, err := openImageStore()
			if err != nil {
				return err
			}
			res, err := s.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed %d images and %d layers, %s\n", res.Images, res.Layers, formatSize(res.Bytes))
			return nil
		}),
	}
}

func shortImageID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// formatSize is n bytes in decimal units, as registries show sizes.
func formatSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// parseSize reads 512m, 20g, 1.5t or a number of bytes (powers of 1024).
func parseSize(s string) (int64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if v, ok := strings.CutSuffix(strings.TrimSuffix(strings.TrimSuffix(num, "b"), "i"), u.suffix); ok {
			num, mult = v, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, errors.New("want a size such as 512m or 20g")
	}
	return int64(f * mult), nil
}

// progressBar draws a pull's progress on one terminal line.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	drawn bool
}

// newProgressBar returns a bar drawing on w when w is a terminal, and nil
// (no progress at all) otherwise.
func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progressBar{w: w}
}

func (b *progressBar) update(p imagestore.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const width = 24
	frac := 1.0
	if p.Bytes > 0 {
		frac = min(1, float64(p.BytesDone)/float64(p.Bytes))
	} else if p.Layers > 0 {
		frac = float64(p.LayersDone) / float64(p.Layers)
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	line := fmt.Sprintf("pulling %s [%s] %s/%s, %d/%d layers", p.Ref, bar, formatSize(p.BytesDone), formatSize(p.Bytes), p.LayersDone, p.Layers)
	if p.Cached > 0 {
		line += fmt.Sprintf(" (%d cached)", p.Cached)
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s", line)
	b.drawn = true
}

// finish ends the bar's line.
func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\n")
	}
}

// noteHandler prints what unpacking skipped or changed (a device node,
// setuid bits) as "compute: note: IMAGE: message" lines.
type noteHandler struct {
	mu        sync.Mutex
	w         io.Writer
	clearLine string
}

func (h *noteHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *noteHandler) Handle(_ context.Context, r slog.Record) error {
	image := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "image" {
			image = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintf(h.w, "%scompute: note: %s: %s\n", h.clearLine, image, r.Message)
	return err
}

func (h *noteHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *noteHandler) WithGroup(string) slog.Handler      { return h }
