#!/usr/bin/env bash
# Installs the Debian package (scripts/package.sh) on this machine and checks it as a user
# would meet it: `man megacmd`, a shell completion, `--version`, the systemd unit
# (`systemd-analyze verify`), mounting through fstab lines that use the installed helpers
# (`mega` and `fuse.mega-mount` types) against a local mega-testserver, and a clean removal.
# Needs root and /dev/fuse; called by scripts/test.sh.
#
#   scripts/test-package.sh [--profile dev|release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev
[ "${1:-}" = --profile ] && profile="$2"
[ "$(id -u)" = 0 ] || { echo "test-package: needs root (dpkg -i, mount)"; exit 1; }
for tool in systemd-analyze man; do
  command -v "$tool" >/dev/null || { echo "test-package: $tool is missing"; exit 1; }
done

if dpkg -s mega-mount >/dev/null 2>&1; then
  echo "test-package: skipped: a mega-mount package is installed here already (it is left alone)"
  exit 0
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  for mp in "$work/m1" "$work/m2"; do
    if grep -qs " $mp fuse" /proc/mounts; then
      fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    fi
  done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  dpkg -s mega-mount >/dev/null 2>&1 && dpkg --purge mega-mount >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }
# Every step that touches a mount has a time limit: a hung mount must not hang CI.
t() { timeout 60 "$@"; }

deb=$(scripts/package.sh --profile "$profile" | tail -n1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
# Some images exclude man pages from installs; this package's are part of what is tested.
dpkg --path-include='/usr/share/man/*' -i "$deb" >/dev/null

# The tools, their version and their documentation.
megacmd --version | grep -q "commit" || fail "megacmd --version names no commit"
mega-mount --version | grep -q "commit" || fail "mega-mount --version names no commit"
man -w megacmd >/dev/null || fail "man megacmd: no page"
MANPAGER=cat MANWIDTH=80 man megacmd 2>/dev/null | grep -q "EXIT STATUS" || fail "man megacmd lacks EXIT STATUS"
MANPAGER=cat man megacmd-get 2>/dev/null | grep -q -- "--version" || fail "man megacmd-get"
MANPAGER=cat man mega-mount 2>/dev/null | grep -q -- "--foreground" || fail "man mega-mount"
bash -c 'source /usr/share/bash-completion/completions/megacmd && complete -p megacmd' | grep -q megacmd \
  || fail "bash completion does not register"
words=$(bash -c 'source /usr/share/bash-completion/completions/megacmd
  COMP_WORDS=(megacmd sh); COMP_CWORD=1; COMP_LINE="megacmd sh"; COMP_POINT=10
  _megacmd megacmd sh megacmd; printf "%s\n" "${COMPREPLY[@]}"')
echo "$words" | grep -qx "share" || fail "bash completion of 'megacmd sh' lacks share: $words"

# The systemd units, as instances for a mountpoint and a folder to back up.
unit="$work/mega-mount@$(systemd-escape --path "$work/m1").service"
cp /usr/lib/systemd/user/mega-mount@.service "$unit"
systemd-analyze verify "$unit" || fail "systemd-analyze verify mega-mount@"
unit="$work/mega-backup@$(systemd-escape --path "$work/docs").service"
cp /usr/lib/systemd/user/mega-backup@.service "$unit"
systemd-analyze verify "$unit" || fail "systemd-analyze verify mega-backup@"

# A server and an account, and a config file that names them (0600: it holds a password).
mega-testserver() { target/debug/mega-testserver "$@"; }
[ -x target/debug/mega-testserver ] || cargo build --quiet -p mega-testserver
mega-testserver useradd --data "$work/server" pkg@example.com 'package test' >/dev/null
# The binary itself in the background (not the shell function above: `$!` would then be a
# subshell, and killing it would leave the server running after the test).
target/debug/mega-testserver --data "$work/server" --listen 127.0.0.1:0 > "$work/url" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -n1 "$work/url")
[ -n "$url" ] || fail "the test server did not start"
( umask 077
  printf 'api_url = "%s"\nemail = "pkg@example.com"\npassword = "package test"\n' "$url" > "$work/config.toml" )

# fstab lines using the installed helpers: type `mega` (/sbin/mount.mega) and
# `fuse.mega-mount` (/sbin/mount.fuse.mega-mount). An fstab of our own (mount -T).
mkdir -p "$work/m1" "$work/m2"
cat > "$work/fstab" <<FSTAB
mega  $work/m1  mega             noauto,config=$work/config.toml,cache_dir=$work/cache1  0 0
mega  $work/m2  fuse.mega-mount  noauto,config=$work/config.toml,cache_dir=$work/cache2  0 0
FSTAB
for mp in "$work/m1" "$work/m2"; do
  t mount -T "$work/fstab" "$mp" || fail "mount $mp through fstab"
  grep -qs " $mp fuse" /proc/mounts || fail "$mp is not mounted"
done
t sh -c "echo 'through fstab' > '$work/m1/hello.txt'" || fail "write on the mount"
# The other mount sees the file (after the event channel delivers it).
for _ in $(seq 100); do [ -f "$work/m2/hello.txt" ] && break; sleep 0.1; done
[ "$(t cat "$work/m2/hello.txt")" = "through fstab" ] || fail "the second mount does not read the file"
# A backup made by the installed megacmd, as the unit runs it (one pass here), shows on the
# mount as "My backups/<device>/docs".
mkdir -p "$work/docs" && echo "backed up" > "$work/docs/report.txt"
t megacmd --conf "$work/config.toml" backup "$work/docs" || fail "megacmd backup"
t megacmd --conf "$work/config.toml" backup --list | grep -q "backup .*$work/docs" \
  || fail "backup --list does not show the backup"
for _ in $(seq 100); do [ -d "$work/m1/My backups" ] && break; sleep 0.1; done
[ "$(t sh -c "cat '$work/m1/My backups'/*/docs/report.txt")" = "backed up" ] \
  || fail "the backup is not readable on the mount"
for mp in "$work/m1" "$work/m2"; do
  t umount "$mp" || fail "umount $mp"
done

# Removal leaves nothing of the package behind.
dpkg --purge mega-mount >/dev/null
for f in /usr/bin/megacmd /usr/bin/mega-mount /sbin/mount.mega /sbin/mount.fuse.mega-mount \
         /usr/lib/systemd/user/mega-mount@.service /usr/lib/systemd/user/mega-backup@.service \
         /usr/share/man/man1/megacmd.1.gz; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is still there after removal"
done
echo "test-package: ok"
