#!/usr/bin/env bash
# Builds a Debian package of mega-mount: both binaries, their man pages and shell completions
# (generated from the command-line definitions), the systemd user unit, the mount helper
# names (mount.mega, mount.fuse.mega-mount) and the README.
#
#   scripts/package.sh                # release build -> target/debian/mega-mount_VERSION_ARCH.deb
#   scripts/package.sh --profile dev  # package the binaries of the test build (what CI installs)
#
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    *) echo "usage: $0 [--profile release|dev]" >&2; exit 2 ;;
  esac
done
if [ "$profile" = release ]; then
  cargo build --release --locked --quiet --bin mega-mount --bin megacmd
  bin=target/release
else
  cargo build --profile "$profile" --locked --quiet --bin mega-mount --bin megacmd
  bin=target/debug
  [ "$profile" = dev ] || bin="target/$profile"
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
pkg="$root/mega-mount"

install -D -m 0755 "$bin/mega-mount" "$pkg/usr/bin/mega-mount"
install -D -m 0755 "$bin/megacmd" "$pkg/usr/bin/megacmd"
if [ "$profile" = release ]; then
  strip "$pkg/usr/bin/mega-mount" "$pkg/usr/bin/megacmd"
fi
# mount(8) runs /sbin/mount.TYPE for an fstab line of type TYPE: `mega` and `fuse.mega-mount`.
mkdir -p "$pkg/sbin"
ln -s /usr/bin/mega-mount "$pkg/sbin/mount.mega"
ln -s /usr/bin/mega-mount "$pkg/sbin/mount.fuse.mega-mount"

man="$pkg/usr/share/man/man1"
"$bin/megacmd" man-pages "$man" 2>/dev/null
gzip -9n "$man"/*.1

comp="$pkg/usr/share"
mkdir -p "$comp/bash-completion/completions" "$comp/zsh/vendor-completions" "$comp/fish/vendor_completions.d"
for prog in megacmd mega-mount; do
  "$bin/megacmd" completion bash --for "$prog" > "$comp/bash-completion/completions/$prog"
  "$bin/megacmd" completion zsh --for "$prog" > "$comp/zsh/vendor-completions/_$prog"
  "$bin/megacmd" completion fish --for "$prog" > "$comp/fish/vendor_completions.d/$prog.fish"
done

install -D -m 0644 dist/systemd/mega-mount@.service "$pkg/usr/lib/systemd/user/mega-mount@.service"
install -D -m 0644 dist/systemd/mega-backup@.service "$pkg/usr/lib/systemd/user/mega-backup@.service"
install -D -m 0644 README.md "$pkg/usr/share/doc/mega-mount/README.md"
cat > "$pkg/usr/share/doc/mega-mount/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mega-mount

Files: *
License: MIT or Apache-2.0
COPYRIGHT

size=$(du -sk "$pkg" | cut -f1)
mkdir -p "$pkg/DEBIAN"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: mega-mount
Version: $version
Architecture: $arch
Maintainer: mega-mount developers <mega-mount@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.34), fuse3
Suggests: ffmpeg
Section: net
Priority: optional
Homepage: https://mega.nz
Description: client for MEGA cloud storage: FUSE mount, command line and sync
 mega-mount mounts a MEGA Cloud Drive as a local folder (every byte checked
 against MEGA's MACs, every upload under a fresh key); megacmd is an
 s3cmd-style command line with one-way and two-way folder sync.
CONTROL

mkdir -p target/debian
out="target/debian/mega-mount_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z1 --build "$pkg" "$out" >/dev/null
echo "$out"
