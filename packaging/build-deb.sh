#!/usr/bin/env bash
# Builds the two Debian packages into target/debian/:
#   codext_<version>_amd64.deb        helper, DigitalOcean channel process, PAM module,
#                                     units, shipped files
#   codext-agent_<version>_amd64.deb  the agent CLI
# The version is the workspace's (Cargo.toml). Man pages and completions are
# generated from the clap definitions (packaging/gen-docs); the units are
# the source tree's with the packaged paths of the binaries; the conffile is
# docs/helper.toml with every setting commented out (a missing or empty
# setting means the default). Then lintian, if installed, must report no
# error and no warning. Installs cargo-deb when it is missing. The session
# recorder is built statically (see below) and shipped in /usr/lib/codext/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-deb >/dev/null 2>&1 || cargo install --quiet --locked cargo-deb
P=target/packaging
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

cargo build --release --locked -p codext-helper -p codext-channel -p codext -p pam_codext -p codext-gen-docs
# The session recorder, statically linked (no dynamic loader runs in it, so
# LD_PRELOAD cannot put code into it): its own target folder and --target,
# so the flag reaches it alone (tests/build.rs builds the tests' copy alike).
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p codext-record --bin codext-record \
    --target x86_64-unknown-linux-gnu --target-dir target/static-record
recorder=target/static-record/x86_64-unknown-linux-gnu/release/codext-record
if readelf -l "$recorder" | grep -q 'Requesting program interpreter'; then
    echo "build-deb.sh: $recorder is dynamically linked" >&2; exit 1
fi
rm -rf "$P" && mkdir -p "$P"
target/release/codext-gen-docs "$P"
# cargo-deb strips only what lies in target/release/: the recorder is
# stripped here.
strip --strip-unneeded -o "$P/codext-record" "$recorder"
gzip -9n "$P"/man/*
sed "s#/usr/local/sbin/codext-helper#/usr/sbin/codext-helper#; s#^Documentation=.*#Documentation=man:codext-helper(8)#" \
    systemd/codext-helper.service > "$P/codext-helper.service"
grep -q 'ExecStart=/usr/sbin/codext-helper serve' "$P/codext-helper.service"
sed "s#/usr/local/bin/codext-channel#/usr/sbin/codext-channel#; s#^Documentation=.*#Documentation=man:codext-channel(8)#" \
    systemd/codext-channel.service > "$P/codext-channel.service"
grep -q 'ExecStart=/usr/sbin/codext-channel ' "$P/codext-channel.service"
{
    echo "# /etc/codext/helper.toml: codext-helper's settings. Every setting below is"
    echo "# commented out and shows its default; uncomment a line to change it."
    echo "# Unknown keys are rejected. Reference: /usr/share/doc/codext/examples/helper.toml"
    echo "# After a change: systemctl restart codext-helper (and codext-helper doctor)."
    echo
    # `version` stays (the one required key); everything else commented.
    sed -e '1,2d' -e '/^version = /b' -e 's/^\([^#]\)/# \1/' docs/helper.toml
} > "$P/helper.toml"
for c in changelog changelog-agent; do
    sed "s/@VERSION@/$version/" "packaging/debian/$c" | gzip -9n > "$P/$c.gz"
done

cargo deb --locked --no-build -p codext-helper --output "target/debian/codext_${version}_amd64.deb"
cargo deb --locked --no-build -p codext --output "target/debian/codext-agent_${version}_amd64.deb"
if command -v lintian >/dev/null 2>&1; then
    # Errors and warnings fail the build (none today; a tag suppressed on
    # purpose goes into lintian-overrides.txt with its reason). Info tags
    # printed: hardening-no-fortify-functions (Rust code, no fortified libc
    # calls to make), no-md5sums-control-file (cargo-deb writes none),
    # package-supports-alternative-init-but-no-init.d-script (systemd only).
    lintian --fail-on error,warning -I --suppress-tags-from-file packaging/lintian-overrides.txt \
        "target/debian/codext_${version}_amd64.deb" "target/debian/codext-agent_${version}_amd64.deb" || {
        echo "build-deb.sh: lintian reports errors or warnings" >&2; exit 1; }
fi
ls -l target/debian/*_"${version}"_amd64.deb
