//go:build linux

package local

// An image's USER on the local provider. Sandboxed code runs as the user
// an image names, as Docker runs it: "name", "uid", "name:group" or
// "uid:gid", names looked up in the image's own /etc/passwd and
// /etc/group. The sandbox's user namespace then maps three ids instead of
// two (idmap_linux.go): its root (which owns the image's files), the
// agent, and the image's user, each a host uid of the sandbox's own. The
// agent's spawner thread becomes the user before it is confined, so
// everything started in the sandbox runs as that user, with no
// capabilities and no way back to root (package agent, user_linux.go).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// imageUser is who an image's programs run as, when not root.
type imageUser struct {
	uid, gid int
	name     string // the passwd name; "" for a uid the image's passwd lacks
	home     string // from passwd; "/" where it has none
	// owned are the image's files that are the user's or its group's
	// (imageOwned); left counts those over the budget, left the root's.
	owned []agentproto.Owned
	left  int
}

// maxImageID bounds the uids and gids an image may name: ids are 32-bit,
// and (uid_t)-1 means "unchanged" to the kernel. Docker's runtime (runc)
// takes the same range.
const maxImageID = 1<<31 - 1

// proto is the user as the agent gets it; nil for root.
func (u *imageUser) proto() *agentproto.User {
	if u == nil {
		return nil
	}
	return &agentproto.User{UID: u.uid, GID: u.gid, Owned: u.owned}
}

// env sets the user's HOME and USER in base, under the image's own
// environment (which, with CreateOptions.Env, is applied after).
func (u *imageUser) env(base map[string]string) {
	if u == nil {
		return
	}
	base["HOME"] = u.home
	if u.name != "" {
		base["USER"] = u.name
	} else {
		delete(base, "USER") // not root, as the base environment says
	}
}

// runAs is who img's programs run as: nil for root (and for no image).
// It was checked when the image was opened (openImage); an error here
// means the image's files changed since, and the sandbox must not start
// (it would otherwise run the image's programs as root).
func (img *sandboxImage) runAs() (*imageUser, error) {
	if img == nil {
		return nil, nil
	}
	return imageUserOf(img.ref, img.im)
}

// imageUsers caches resolved users by image ID and USER: an image's
// layers never change under its ID, and opening its /etc files at every
// start would cost a sandbox start several file lookups per layer.
var imageUsers struct {
	sync.Mutex
	m map[string]*imageUser
}

// imageUserOf resolves im's USER: nil for root. A user other than root
// needs the provider to run as root (a non-root owner's user namespace
// can map only its own uid): ErrUnsupported otherwise. A name the image
// does not define, or an id out of range, is an error saying so.
func imageUserOf(ref string, im *imagestore.Image) (*imageUser, error) {
	spec := im.Config.User
	if spec == "" {
		return nil, nil
	}
	key := im.ID + "\x00" + spec
	imageUsers.Lock()
	u, ok := imageUsers.m[key]
	imageUsers.Unlock()
	if !ok {
		var err error
		if u, err = resolveImageUser(im, spec); err == nil && u != nil {
			u.owned, u.left, err = imageOwned(im, u)
		}
		if err != nil {
			return nil, fmt.Errorf("local: image %s: USER %q: %w", ref, spec, err)
		}
		imageUsers.Lock()
		if imageUsers.m == nil || len(imageUsers.m) >= 256 {
			imageUsers.m = map[string]*imageUser{}
		}
		imageUsers.m[key] = u
		imageUsers.Unlock()
	}
	if u != nil && os.Geteuid() != 0 {
		return nil, fmt.Errorf("local: image %s runs as user %q (uid %d, gid %d), not root; a sandbox's user namespace can map another user only when the provider runs as root (without root, the kernel lets it map the owner's own uid alone, as the sandbox's root); run the provider as root, or use an image whose USER is root (or unset): %w", ref, spec, u.uid, u.gid, driver.ErrUnsupported)
	}
	return u, nil
}

// resolveImageUser resolves a USER spec the way Docker's runtime does:
// a name, or a uid the passwd file lists, takes its uid, primary gid and
// home from it; a uid it does not list runs with gid 0 and home "/"; an
// explicit group (a name from /etc/group, or a gid) replaces the primary
// one. The result is nil where that is uid 0 and gid 0 (root).
// Supplementary groups from /etc/group are not applied: the sandbox maps
// one group for the user (its primary), and the user is in it alone.
func resolveImageUser(im *imagestore.Image, spec string) (*imageUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || hasGroup && groupPart == "" {
		return nil, errors.New("malformed: want user, uid, user:group or uid:gid")
	}
	u := &imageUser{uid: -1, home: "/"}
	n, numErr := parseImageID(userPart)
	if numErr != nil && isNumeric(userPart) {
		return nil, numErr
	}
	entry, err := lookupImageEntry(im, "etc/passwd", func(f []string) bool {
		return len(f) >= 6 && (f[0] == userPart || numErr == nil && f[2] == strconv.Itoa(n))
	})
	switch {
	case err != nil:
		return nil, err
	case entry != nil:
		uid, err1 := parseImageID(entry[2])
		gid, err2 := parseImageID(entry[3])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("the image's /etc/passwd line for %q: %w", entry[0], err)
		}
		u.uid, u.gid, u.name = uid, gid, entry[0]
		if entry[5] != "" {
			u.home = entry[5]
		}
	case numErr == nil:
		u.uid, u.gid = n, 0
	case userPart == "root":
		u.uid, u.gid, u.name, u.home = 0, 0, "root", "/root"
	default:
		return nil, fmt.Errorf("no user %q in the image's /etc/passwd; use a user the image defines, or a numeric uid", userPart)
	}
	if hasGroup {
		g, numErr := parseImageID(groupPart)
		if numErr != nil && isNumeric(groupPart) {
			return nil, numErr
		}
		entry, err := lookupImageEntry(im, "etc/group", func(f []string) bool {
			return len(f) >= 3 && (f[0] == groupPart || numErr == nil && f[2] == strconv.Itoa(g))
		})
		switch {
		case err != nil:
			return nil, err
		case entry != nil:
			if g, err = parseImageID(entry[2]); err != nil {
				return nil, fmt.Errorf("the image's /etc/group line for %q: %w", entry[0], err)
			}
		case numErr == nil:
		case groupPart == "root":
			g = 0
		default:
			return nil, fmt.Errorf("no group %q in the image's /etc/group; use a group the image defines, or a numeric gid", groupPart)
		}
		u.gid = g
	}
	if u.uid == 0 && u.gid == 0 {
		return nil, nil
	}
	return u, nil // root in another group too: that group is mapped
}

func isNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseImageID parses a uid or gid the image names.
func parseImageID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !isNumeric(s) {
		return -1, fmt.Errorf("%q is not a number", s)
	}
	if n > maxImageID {
		return -1, fmt.Errorf("id %s is out of range (at most %d)", s, maxImageID)
	}
	return n, nil
}

// maxImageIDFile bounds what is read of an image's /etc/passwd or
// /etc/group: a hostile image could make either endless.
const maxImageIDFile = 4 << 20

// lookupImageEntry returns the first line of the image's file (passwd or
// group, colon-separated) that match accepts, split; nil when none does
// or the image has no such file. The file is read from the layers
// without following any link out of them (openImageFile).
func lookupImageEntry(im *imagestore.Image, file string, match func([]string) bool) ([]string, error) {
	f, err := openImageFile(im, file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read the image's /%s: %w", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxImageIDFile))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if fields := strings.Split(line, ":"); match(fields) {
			return fields, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the image's /%s: %w", file, err)
	}
	return nil, nil
}

// takeBareFor is takeBare for a sandbox of img. A bare spare was started
// before any image was named, and its user namespace maps no id for an
// image's USER: such an image's sandbox starts afresh (or comes from the
// image reserve, which is started for its image).
func (p *Provider) takeBareFor(network bool, img *sandboxImage) *sandbox {
	if u, err := img.runAs(); err != nil || u != nil {
		return nil
	}
	return p.takeBare(network)
}

// checkUser makes sure a sandbox's user namespace was set up for the
// user img runs as (buildRoot on a sandbox launched ahead of demand):
// never an image's programs as root by mistake.
func (s *sandbox) checkUser(img *sandboxImage) error {
	u, err := img.runAs()
	if err != nil {
		return err
	}
	want, have := u.proto(), s.cfg.User
	if (want == nil) != (have == nil) || want != nil && (want.UID != have.UID || want.GID != have.GID) {
		return fmt.Errorf("local: image %s: the sandbox was started for another user than the image's USER", img.ref)
	}
	if u != nil {
		s.limits = append(s.limits, fmt.Sprintf("user: the image's USER %q (uid %d, gid %d; no capabilities)", img.im.Config.User, u.uid, u.gid))
		if u.left > 0 {
			s.limits = append(s.limits, fmt.Sprintf("user: %d of the image's files that are its USER's are left the root's (a start gives at most %d files, %d MiB of file data, %d KiB of paths)", u.left, maxOwned, maxOwnedBytes>>20, maxOwnedList>>10))
		}
	}
	return nil
}

// The budget of an image's files given to its user at each start. The
// layers hold every file as the sandbox's root's (package imagestore
// does not chown: see Layer.Owners), so the agent chowns the user's in
// the sandbox's overlay, which copies each up into the sandbox's disk:
// directories and links cost nothing to speak of, regular files their
// size. The list goes in the agent's configuration message (one
// datagram of at most agentproto.MaxConfig bytes, with the environment
// and the layers), hence the bounds on its count and encoded size.
const (
	maxOwned      = 1000
	maxOwnedBytes = 32 << 20
	maxOwnedList  = 24 << 10
)

// generatedEtc are the files the agent writes into every image root: they
// stay the sandbox root's, whatever the image says.
var generatedEtc = map[string]bool{"etc/hostname": true, "etc/hosts": true, "etc/resolv.conf": true}

// imageOwned lists the image's paths that belong to u's uid or gid, as
// the top-most layer that has each path says (a path a higher layer
// holds too, or deletes, is that layer's, and only non-root owners are
// listed), within the budget; left counts the rest.
func imageOwned(im *imagestore.Image, u *imageUser) (owned []agentproto.Owned, left int, err error) {
	dirs := make([]int, len(im.Layers))
	for i := range dirs {
		dirs[i] = -1
	}
	defer func() {
		for _, fd := range dirs {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	for i, l := range im.Layers {
		if dirs[i], err = unix.Open(l.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, 0, fmt.Errorf("layer %s: %w", l.Dir, err)
		}
	}
	var bytes, list int64
	for i := len(im.Layers) - 1; i >= 0; i-- {
		owners, err := im.Layers[i].Owners()
		if err != nil {
			return nil, 0, fmt.Errorf("layer %s: owners: %w", im.Layers[i].DiffID, err)
		}
	entries:
		for _, o := range owners {
			if o.UID != u.uid && o.GID != u.gid || generatedEtc[o.Path] {
				continue
			}
			for j := i + 1; j < len(im.Layers); j++ {
				if _, err := statInLayer(dirs[j], o.Path); err == nil {
					continue entries // a higher layer's (or deleted there)
				}
			}
			st, err := statInLayer(dirs[i], o.Path)
			if err != nil {
				continue // not a path of this layer's own (under a link)
			}
			size := int64(0)
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				size = st.Size
			}
			e := agentproto.Owned{Path: o.Path}
			if o.UID == u.uid {
				e.UID = u.uid
			}
			if o.GID == u.gid {
				e.GID = u.gid
			}
			b, _ := json.Marshal(e)
			if len(owned) >= maxOwned || bytes+size > maxOwnedBytes || list+int64(len(b)+1) > maxOwnedList {
				left++
				continue
			}
			bytes += size
			list += int64(len(b) + 1)
			owned = append(owned, e)
		}
	}
	return owned, left, nil
}

// statInLayer stats a path of a layer, following no link on the way.
func statInLayer(dir int, name string) (*unix.Stat_t, error) {
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
