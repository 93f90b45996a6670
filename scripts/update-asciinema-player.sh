#!/usr/bin/env bash
# Vendors asciinema-player (Apache-2.0, https://github.com/asciinema/asciinema-player)
# from the npm registry into codext-helper/assets/asciinema-player/, which
# `codext-helper sessions export --html` inlines into its self-contained page:
#   asciinema-player.min.js, asciinema-player.css   the standalone bundle (dist/bundle/)
#   LICENSE                                         the package's license
#   VERSION                                         exact version, the registry's integrity
#                                                   of the tarball, and the SHA-256 of each file
# The tarball is fetched with `npm pack`, checked against the integrity the
# registry publishes for that version, and refused if its license is not
# Apache-2.0 or if the bundle holds anything that could end the <script> or
# <style> element it is inlined into. A unit test (recording::html) checks
# the files against VERSION, so a hand edit fails the build.
# Usage: scripts/update-asciinema-player.sh VERSION   (e.g. 3.18.0)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: scripts/update-asciinema-player.sh VERSION (e.g. 3.18.0)}"
dest=codext-helper/assets/asciinema-player
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "asciinema-player@$version" >/dev/null)
tgz="$tmp/asciinema-player-$version.tgz"
want=$(npm view "asciinema-player@$version" dist.integrity)
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$want" != "$got" ]; then
    echo "update-asciinema-player: integrity mismatch: the registry says $want, the tarball is $got" >&2
    exit 1
fi
tar -xzf "$tgz" -C "$tmp"
license=$(node -p "require('$tmp/package/package.json').license")
if [ "$license" != "Apache-2.0" ]; then
    echo "update-asciinema-player: the package's license is $license, not Apache-2.0" >&2
    exit 1
fi
js="$tmp/package/dist/bundle/asciinema-player.min.js"
css="$tmp/package/dist/bundle/asciinema-player.css"
if grep -qiE '</script|<!--' "$js" || grep -qi '</style' "$css"; then
    echo "update-asciinema-player: the bundle could end the element it is inlined into" >&2
    exit 1
fi
mkdir -p "$dest"
install -m 0644 "$js" "$css" "$tmp/package/LICENSE" "$dest/"
{
    echo "package: asciinema-player"
    echo "version: $version"
    echo "license: Apache-2.0"
    echo "source: https://registry.npmjs.org/asciinema-player/-/asciinema-player-$version.tgz"
    echo "integrity: $want"
    echo "tarball-sha256: $(sha256sum "$tgz" | cut -d' ' -f1)"
    for f in asciinema-player.min.js asciinema-player.css LICENSE; do
        echo "sha256 $f: $(sha256sum "$dest/$f" | cut -d' ' -f1)"
    done
} > "$dest/VERSION"
echo "vendored asciinema-player $version into $dest:"
cat "$dest/VERSION"
