#!/usr/bin/env bash
# The demo: builds, starts a local mega-testserver with a demo account holding a few sample
# files, mounts the account at MOUNTPOINT (default ./mega-demo), and prints how to use and
# unmount it. Everything stays on this machine (the server listens on 127.0.0.1).
#
#   scripts/demo.sh [MOUNTPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mp="${1:-$repo/mega-demo}"

# fuse3 (fusermount3) for the mount; make builds jemalloc, the mount's allocator.
need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

echo "==> building"
cargo build --quiet --bin mega-mount --bin megacmd -p mega-mount
cargo build --quiet -p mega-testserver
bin="$repo/target/debug"

state="${XDG_STATE_HOME:-$HOME/.local/state}/mega-mount-demo"
mkdir -p "$state"
if [ -f "$state/server.pid" ] && kill -0 "$(cat "$state/server.pid")" 2>/dev/null; then
  echo "==> the demo server is already running"
else
  if [ ! -f "$state/server/mega.sqlite" ]; then
    "$bin/mega-testserver" useradd --data "$state/server" demo@example.com 'demo password' --name "Demo User" >/dev/null
    "$bin/mega-testserver" useradd --data "$state/server" friend@example.com 'friend password' --name "A Friend" >/dev/null
    first=1
  fi
  "$bin/mega-testserver" --data "$state/server" --listen 127.0.0.1:0 > "$state/url" 2> "$state/server.log" &
  echo $! > "$state/server.pid"
  for _ in $(seq 50); do [ -s "$state/url" ] && break; sleep 0.1; done
fi
url=$(head -1 "$state/url")
# The demo's own settings, so that it never touches your real megacmd session.
export MEGA_API_URL="$url" MEGA_EMAIL=demo@example.com MEGA_PASSWORD='demo password'
export XDG_CONFIG_HOME="$state/config" XDG_CACHE_HOME="$state/cache"

if [ "${first:-0}" = 1 ]; then
  echo "==> adding sample files"
  samples="$state/samples"
  mkdir -p "$samples/Documents" "$samples/Photos"
  cp README.md "$samples/Documents/README.md"
  printf 'Shopping list\n- milk\n- bread\n' > "$samples/Documents/notes.txt"
  head -c 3000000 /dev/urandom > "$samples/Photos/holiday.raw"
  "$bin/megacmd" put -r "$samples/Documents" "$samples/Photos" mega:/ >/dev/null
  # A second account shares a folder with the demo account (it shows under "Shared with me").
  mkdir -p "$samples/Team plans"
  printf 'Q1: ship the mount\nQ2: shares\n' > "$samples/Team plans/roadmap.txt"
  (export MEGA_EMAIL=friend@example.com MEGA_PASSWORD='friend password' XDG_CONFIG_HOME="$state/friend-config"
   "$bin/megacmd" put -r "$samples/Team plans" mega:/ >/dev/null
   "$bin/megacmd" share "mega:/Team plans" demo@example.com --access readwrite)
fi

mkdir -p "$mp"
if grep -qs " $(realpath "$mp") fuse" /proc/mounts; then
  echo "==> already mounted at $mp"
else
  "$bin/mega-mount" "$mp"
fi

cat <<MSG

Mounted the demo MEGA account at $mp (server: $url).

  ls -la $mp                       # your "cloud drive"
  cat $mp/Documents/notes.txt
  ls "$mp/Shared with me/friend@example.com/Team plans"   # a folder another user shares with you
  cp some-file $mp/Documents/      # encrypted and uploaded on close
  df -h $mp                        # the account quota

The same account with the CLI:
  MEGA_API_URL=$url XDG_CONFIG_HOME=$state/config $bin/megacmd ls -r mega:/

To unmount and stop the demo server:
  fusermount3 -u $mp && kill \$(cat $state/server.pid)

The engine walk-through (no mount): cargo run --example demo
MSG
