#!/usr/bin/env bash
# Re-vendors the console's third-party browser code from the npm registry
# at the pinned versions below: downloads each tarball with `npm pack`,
# checks it against the registry's dist.integrity (sha512), and copies
# the files the console loads, with the package's LICENSE, into vendor/.
# Run from anywhere: bash server/console/vendor.sh
# To upgrade, change a version here, run it, and test the console
# (go test ./server -run Console).
set -euo pipefail
cd "$(dirname "$0")"

XTERM_VERSION=6.0.0
FIT_VERSION=0.11.0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch PACKAGE VERSION: downloads PACKAGE@VERSION into $work/PACKAGE,
# verified against the registry's integrity.
fetch() {
	local pkg="$1" version="$2" dir="$work/${1//\//_}"
	mkdir -p "$dir"
	local want
	want="$(npm view "$pkg@$version" dist.integrity)"
	local tgz
	tgz="$(cd "$dir" && npm pack --silent "$pkg@$version" | tail -n 1)"
	# node is there wherever npm is.
	local got
	got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$dir/$tgz")"
	if [ "$got" != "$want" ]; then
		echo "vendor.sh: $pkg@$version: tarball integrity $got does not match the registry's $want" >&2
		exit 1
	fi
	tar -xzf "$dir/$tgz" -C "$dir"
	echo "$pkg@$version $want"
}

fetch @xterm/xterm "$XTERM_VERSION"
fetch @xterm/addon-fit "$FIT_VERSION"

rm -rf vendor/xterm
mkdir -p vendor/xterm
x="$work/@xterm_xterm/package"
f="$work/@xterm_addon-fit/package"
cp "$x/lib/xterm.mjs" "$x/css/xterm.css" vendor/xterm/
cp "$x/LICENSE" vendor/xterm/LICENSE.xterm
cp "$f/lib/addon-fit.mjs" vendor/xterm/
cp "$f/LICENSE" vendor/xterm/LICENSE.addon-fit
{
	echo "# Vendored by vendor.sh from the npm registry; do not edit."
	echo "@xterm/xterm $XTERM_VERSION $(npm view "@xterm/xterm@$XTERM_VERSION" dist.integrity)"
	echo "@xterm/addon-fit $FIT_VERSION $(npm view "@xterm/addon-fit@$FIT_VERSION" dist.integrity)"
} >vendor/xterm/VERSIONS
echo "vendored into $(pwd)/vendor/xterm"
