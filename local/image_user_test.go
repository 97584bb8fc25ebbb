//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local"
)

// An image's USER (Docker semantics: name, uid, name:group, uid:gid) is
// who the sandbox's code runs as, where the provider runs as root: the
// sandbox's user namespace maps it besides the sandbox's root and agent.

// userEtc is the /etc/passwd and /etc/group of the user test images.
func userEtc(t testing.TB) v1.Layer {
	return testLayer(t,
		directory("etc"),
		regular("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"+
			"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"+
			"app:x:1000:1000:the app:/home/app:/bin/sh\n"+
			"nohome:x:1001:1002::\n"+
			"toor:x:0:0::/:/bin/sh\n"),
		regular("etc/group", "root:x:0:\ndaemon:x:1:\napp:x:1000:\nstaff:x:50:app\nother:x:1002:\n"),
		regular("etc/secret", "root only\n"),
		directory("home"), directory("home/app"),
	)
}

// userImages writes one image per USER spec into a store of its own and
// returns the references.
func userImages(t *testing.T, layers []v1.Layer, users ...string) (map[string]string, *imagestore.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for i, u := range users {
		refs[u] = writeImage(t, filepath.Join(dir, "img"+string(rune('a'+i))), v1.Config{User: u, Env: []string{"PATH=/usr/bin:/bin"}}, layers...)
	}
	return refs, st
}

func TestImageUserRequiresRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root, an image's USER is honoured (TestImageUser)")
	}
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), userEtc(t)}, "app", "root")
	p := imageProvider(t, testImage{store: st}, local.Options{Prestart: -1})
	_, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), &compute.CreateOptions{Image: refs["app"]})
	if !errors.Is(err, compute.ErrUnsupported) || !strings.Contains(err.Error(), "run the provider as root") {
		t.Errorf("USER app without root: %v; want ErrUnsupported saying what to do", err)
	}
	sb := createIn(t, p, &compute.CreateOptions{Image: refs["root"]})
	if res := shell(t, sb, "id -u"); res.Stdout != "0\n" {
		t.Errorf("USER root: id -u = %q", res.Stdout)
	}
}

func requireRootForUser(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("an image's USER other than root needs the provider to run as root (without root, a user namespace maps one uid); TestImageUserRequiresRoot checks the error")
	}
}

// Every form of USER resolves as Docker resolves it, and runs the code
// as that uid and gid with the user's HOME; names the image lacks are a
// clear error.
func TestImageUserForms(t *testing.T) {
	requireRootForUser(t)
	forms := []struct{ user, want string }{
		{"app", "1000 1000 1000 /home/app app"},
		{"1000", "1000 1000 1000 /home/app app"},
		{"app:staff", "1000 50 50 /home/app app"},
		{"1000:50", "1000 50 50 /home/app app"},
		{"4242", "4242 0 0 / -"},            // a uid passwd lacks: group 0, HOME /
		{"4242:4243", "4242 4243 4243 / -"}, // the same, its group given
		{"nohome", "1001 1002 1002 / nohome"},
		{"daemon", "1 1 1 /usr/sbin daemon"}, // the agent's usual id: the agent moves
		{"0:app", "0 1000 1000 /root root"},  // root, in another group
		{"root", "0 0 0 /workspace root"},
		{"toor", "0 0 0 /workspace root"},
	}
	var users []string
	for _, f := range forms {
		users = append(users, f.user)
	}
	bad := []string{"nosuch", "app:nosuch", "99999999999", "app:"}
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), userEtc(t)}, append(users, bad...)...)
	p := imageProvider(t, testImage{store: st}, local.Options{Prestart: -1})
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	for _, f := range forms {
		t.Run(f.user, func(t *testing.T) {
			sb, err := c.Create(ctx, &compute.CreateOptions{Image: refs[f.user]})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(ctx)
			res := shell(t, sb, `echo $(id -u) $(id -g) $(id -G) $HOME ${USER:--}`)
			if strings.TrimSpace(res.Stdout) != f.want {
				t.Errorf("uid gid groups HOME USER = %q (stderr %q), want %q", res.Stdout, res.Stderr, f.want)
			}
			// The agent (the sandbox's pid 1) is never the code's uid.
			if res := shell(t, sb, "kill -0 1 && echo reached"); res.Stdout != "" {
				t.Errorf("the code can signal the agent")
			}
		})
	}
	for _, user := range bad {
		_, err := c.Create(ctx, &compute.CreateOptions{Image: refs[user]})
		if err == nil || !strings.Contains(err.Error(), "USER") || !strings.Contains(err.Error(), refs[user]) {
			t.Errorf("USER %q: %v; want an error naming the image and its USER", user, err)
		}
	}
}

// TestImageUser checks what code running as an image's user can and
// cannot do: its files, the system's files, commands, terminals, RunCode
// and code contexts, and the ways back to root.
func TestImageUser(t *testing.T) {
	requireRootForUser(t)
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), pythonLayer(t), userEtc(t)}, "app")
	p := imageProvider(t, testImage{store: st}, local.Options{})
	sb := createIn(t, p, &compute.CreateOptions{Image: refs["app"]})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, c := range []struct{ name, script, want string }{
		{"ids", "id -u; id -g; id -G; echo $HOME", "1000\n1000\n1000\n/home/app\n"},
		{"own files", "touch /workspace/x /tmp/y && mkdir /workspace/d && stat -c %u:%g /workspace /workspace/x /workspace/d /tmp/y", "1000:1000\n1000:1000\n1000:1000\n1000:1000\n"},
		{"system files", "stat -c %u /etc/passwd /bin/busybox /etc; echo x >> /etc/passwd || echo refused; touch /etc/new || echo refused; rm /etc/secret || echo refused; cat /etc/secret", "0\n0\n0\nrefused\nrefused\nrefused\nroot only\n"},
		{"no capabilities", "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '",
			"CapInh: 0000000000000000\nCapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs: 1\n"},
		{"no setuid files", "find / -xdev -perm /6000 -type f 2>/dev/null | head -3; echo done", "done\n"},
		{"su", "su -c 'id -u' root </dev/null 2>/dev/null; su root -c 'id -u' </dev/null 2>/dev/null; echo $?", "1\n"},
		{"new user namespace", "unshare -U -r id -u 2>/dev/null || echo refused", "refused\n"},
		{"agent out of reach", "kill -0 1 2>/dev/null || echo refused; cat /proc/1/environ >/dev/null 2>&1 || echo refused", "refused\nrefused\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := shell(t, sb, c.script)
			if res.Stdout != c.want {
				t.Errorf("%s\n= %q (exit %d, stderr %q)\nwant %q", c.script, res.Stdout, res.ExitCode, res.Stderr, c.want)
			}
		})
	}

	// Python cannot regain root either: setuid, setresuid to the
	// sandbox's root or the agent's uid, a user namespace of its own.
	res, err := sb.RunCode(ctx, `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def unshare_user():
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        raise PermissionError(ctypes.get_errno(), "unshare")
print(os.getuid(), os.getgid(), os.getgroups(), os.path.expanduser("~"))
for name, f in [("setuid", lambda: os.setuid(0)), ("setresuid", lambda: os.setresuid(1, 1, 1)),
                ("setgid", lambda: os.setgid(0)), ("setgroups", lambda: os.setgroups([0])),
                ("unshare", unshare_user)]:
    try:
        f()
        print(name, "allowed", os.getuid())
    except PermissionError:
        print(name, "refused")
open("/workspace/from-python", "w").write("x")
print(os.stat("/workspace/from-python").st_uid)
`, &compute.CodeOptions{Runtime: compute.Python})
	want := "1000 1000 [1000] /home/app\nsetuid refused\nsetresuid refused\nsetgid refused\nsetgroups refused\nunshare refused\n1000\n"
	if err != nil || res.Stdout != want {
		t.Errorf("RunCode = %q (stderr %q), %v\nwant %q", res.Stdout, res.Stderr, err, want)
	}

	// A code context's interpreter runs as the user too.
	cc, err := sb.NewCodeContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close(ctx)
	if ex, err := cc.Run(ctx, "import os\nos.getuid(), os.getgid()", nil); err != nil || ex.Main() == nil || ex.Main().Text != "(1000, 1000)" {
		t.Errorf("code context: %+v, %v; want (1000, 1000)", ex, err)
	}

	// A terminal: the user's shell, on a terminal that is the user's.
	term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if _, err := io.WriteString(term, "echo uid=$(id -u) tty=$(stat -c %u:%g $(tty)); exit 7\n"); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(term)
	if code, err := term.Wait(); code != 7 || !strings.Contains(string(out), "uid=1000 tty=1000:1000") {
		t.Errorf("terminal: exit %d, %v, output %q", code, err, out)
	}

	// Files written from outside are the user's, as are directories made
	// for them.
	fsys := sb.FileSystem()
	if err := fsys.WriteFile(ctx, "/workspace/sub/api.txt", []byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if res := shell(t, sb, "stat -c %u:%g /workspace/sub /workspace/sub/api.txt && echo more >> /workspace/sub/api.txt && cat /workspace/sub/api.txt"); res.Stdout != "1000:1000\n1000:1000\nhi\nmore\n" {
		t.Errorf("files from outside: %q (stderr %q)", res.Stdout, res.Stderr)
	}
}

// A USER image's sandboxes come from a cold start or the image reserve
// (started for that image, so for its user), never from the bare
// reserve, whose user namespace maps no id for the user.
func TestImageUserReserves(t *testing.T) {
	requireRootForUser(t)
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), userEtc(t)}, "app", "root")
	p := imageProvider(t, testImage{store: st}, local.Options{})
	c := compute.New(compute.Config{Provider: p})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	check := func(ref, want string) {
		t.Helper()
		sb, err := c.Create(ctx, &compute.CreateOptions{Image: ref})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Destroy(ctx)
		if res := shell(t, sb, "id -u; stat -c %u /workspace"); res.Stdout != want {
			t.Errorf("%s: %q, want %q", ref, res.Stdout, want)
		}
	}
	// Alternating images: the second of each finds the bare reserve
	// warm (the root image's last Create started it) or the image
	// reserve made for the other image; the user's comes out right
	// either way.
	for range 2 {
		check(refs["root"], "0\n0\n")
		if err := p.Warm(ctx); err != nil {
			t.Fatal(err)
		}
		check(refs["app"], "1000\n1000\n")
		if err := p.Warm(ctx); err != nil {
			t.Fatal(err)
		}
		check(refs["app"], "1000\n1000\n") // from the image reserve
	}
}

// The image's files that its layers say are the user's (or its group's)
// are the user's in the sandbox, as the top-most layer with each path
// says; the store's copy stays as it was.
func TestImageUserOwnedFiles(t *testing.T) {
	requireRootForUser(t)
	private := regular("home/app/.profile", "the app's profile\n")
	private.mode = 0o600
	shared := directory("srv/data")
	shared.mode = 0o770
	appFiles := ownedLayer(t,
		owned(directory("home/app"), 1000, 1000),
		owned(private, 1000, 1000),
		owned(link("home/app/passwd", "/etc/passwd"), 1000, 1000),
		owned(directory("srv"), 0, 0),
		owned(shared, 0, 1000),
		owned(regular("srv/over", "the app's, then root's\n"), 1000, 1000),
		owned(regular("srv/other", "another user's\n"), 2000, 2000),
		owned(regular("etc/hostname", "not the app's\n"), 1000, 1000),
	)
	above := testLayer(t, directory("srv"), regular("srv/over", "root's now\n"))
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), userEtc(t), appFiles, above}, "app")
	p := imageProvider(t, testImage{store: st}, local.Options{Prestart: -1})
	sb := createIn(t, p, &compute.CreateOptions{Image: refs["app"]})

	res := shell(t, sb, "stat -c '%n %u:%g' /home/app /home/app/.profile /home/app/passwd /srv /srv/data /srv/over /srv/other /etc/passwd /etc/hostname")
	want := "/home/app 1000:1000\n/home/app/.profile 1000:1000\n/home/app/passwd 1000:1000\n/srv 0:0\n/srv/data 0:1000\n/srv/over 0:0\n/srv/other 0:0\n/etc/passwd 0:0\n/etc/hostname 0:0\n"
	if res.Stdout != want {
		t.Errorf("owners = %q (stderr %q)\nwant %q", res.Stdout, res.Stderr, want)
	}
	res = shell(t, sb, "cat ~/.profile && touch ~/new && echo x > /srv/data/f && echo written; echo y >> /srv/over 2>/dev/null || echo refused; stat -c %u /etc/passwd")
	if want := "the app's profile\nwritten\nrefused\n0\n"; res.Stdout != want {
		t.Errorf("= %q (stderr %q)\nwant %q", res.Stdout, res.Stderr, want)
	}

	// The store's files are as they were: the owners were given in the
	// sandbox's own layer.
	im, err := st.Get(refs["app"])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range im.Layers {
		filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var sys syscall.Stat_t
			if err := syscall.Lstat(p, &sys); err == nil && (int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid()) {
				t.Errorf("the store's %s now belongs to %d:%d", p, sys.Uid, sys.Gid)
			}
			return nil
		})
	}
}

// Past the budget of files given to the user at each start, the rest
// stay root's, and Info says how many.
func TestImageUserOwnedBudget(t *testing.T) {
	requireRootForUser(t)
	entries := []ownedEntry{owned(directory("many"), 1000, 1000)}
	for i := range 1100 {
		entries = append(entries, owned(regular(fmt.Sprintf("many/f%04d", i), "x"), 1000, 1000))
	}
	refs, st := userImages(t, []v1.Layer{busyboxLayer(t), userEtc(t), ownedLayer(t, entries...)}, "app")
	p := imageProvider(t, testImage{store: st}, local.Options{Prestart: -1})
	sb := createIn(t, p, &compute.CreateOptions{Image: refs["app"]})
	res := shell(t, sb, "stat -c %u /many/* | sort | uniq -c | awk '{print $2}'; ls /many | wc -l")
	if res.Stdout != "0\n1000\n1100\n" {
		t.Errorf("owners of the many files: %q (stderr %q), want some the user's and some root's", res.Stdout, res.Stderr)
	}
	info, err := sb.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if limits := strings.Join(info.Limits, "\n"); !strings.Contains(limits, "files that are its USER's are left the root's") || !strings.Contains(limits, `USER "app" (uid 1000, gid 1000`) {
		t.Errorf("Info.Limits do not say what the user got:\n%s", limits)
	}
}
