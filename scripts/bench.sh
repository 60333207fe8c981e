#!/usr/bin/env bash
# Benchmarks, printed as numbers for doc/BENCHMARKS.md:
#  - content crypto per core (criterion), beside OpenSSL's AES-128-CBC on this machine;
#  - megacmd transfers against a local mega-testserver: one 1 GiB file, 1,000 small files.
#  - mega-mount through a real FUSE mount against the same local server.
# `scripts/bench.sh crypto`, `transfers`, `mount` or `sync` runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-all}"
BENCH_RSS=$(mktemp)

timed() { # label, command...
  local label=$1; shift
  local t0 t1 ms rss="-"
  t0=$(date +%s%N)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M" -o "$BENCH_RSS" "$@" >/dev/null
    rss=$(cat "$BENCH_RSS")
  else
    "$@" >/dev/null
  fi
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  printf '%-40s %5d.%03d s   max RSS %s KiB\n' "$label" $((ms / 1000)) $((ms % 1000)) "$rss"
}

# Starts a release mega-testserver with a bench account under DIR; sets srv (its pid) and the
# MEGA_* / XDG_* variables that megacmd and mega-mount read.
start_server() {
  local d=$1
  target/release/mega-testserver useradd --data "$d/srv" bench@example.com bench-password \
    --quota $((8 * 1024 * 1024 * 1024)) >/dev/null
  target/release/mega-testserver --data "$d/srv" --listen 127.0.0.1:0 > "$d/url" &
  srv=$!
  for _ in $(seq 50); do [ -s "$d/url" ] && break; sleep 0.1; done
  export MEGA_API_URL; MEGA_API_URL=$(head -1 "$d/url")
  export MEGA_EMAIL=bench@example.com MEGA_PASSWORD=bench-password
  export XDG_CONFIG_HOME="$d/cfg" XDG_CACHE_HOME="$d/cache"
}

# Release builds of megacmd, mega-mount and the server, once per bench.sh run.
build_release() {
  [ -n "${BUILT:-}" ] && return
  echo "== building release binaries"
  cargo build --release --quiet --bin megacmd --bin mega-mount -p mega-mount
  cargo build --release --quiet -p mega-testserver
  BUILT=1
}

transfers() {
  build_release
  local d; d=$(mktemp -d)
  trap 'kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  start_server "$d"
  local m=target/release/megacmd
  $m login >/dev/null 2>&1
  head -c $((1024 * 1024 * 1024)) /dev/urandom > "$d/big.bin"
  mkdir -p "$d/small"
  for i in $(seq 1 1000); do head -c 4096 /dev/urandom > "$d/small/f$i.bin"; done
  sync
  echo "== megacmd against mega-testserver on 127.0.0.1 (both on this machine's 2 cores)"
  timed "upload 1 GiB (put)" $m put "$d/big.bin" mega:/
  timed "download 1 GiB (get)" $m get mega:/big.bin "$d/big.out"
  cmp "$d/big.bin" "$d/big.out" && echo "1 GiB round trip: bytes equal"
  timed "upload 1,000 x 4 KiB (put -r)" $m put -r "$d/small" mega:/
  timed "download 1,000 x 4 KiB (get -r)" $m get -r mega:/small "$d/small.out"
  timed "sync of the 1,000 files, nothing to do" $m sync "$d/small" mega:/small
}

mount_bench() {
  build_release
  local d; d=$(mktemp -d)
  trap 'fusermount3 -u "$d/mnt" 2>/dev/null || umount -l "$d/mnt" 2>/dev/null; kill "$srv" "$mpid" 2>/dev/null || true; rm -rf "$d"' RETURN
  start_server "$d"
  head -c $((1024 * 1024 * 1024)) /dev/urandom > "$d/big.bin"
  target/release/megacmd put "$d/big.bin" mega:/ >/dev/null 2>&1
  mkdir -p "$d/tree"
  for i in $(seq 0 99); do mkdir "$d/tree/d$i"; for j in $(seq 0 99); do : > "$d/tree/d$i/f$j"; done; done
  target/release/megacmd put -r "$d/tree" mega:/ >/dev/null 2>&1
  mkdir -p "$d/small" "$d/mnt"
  for i in $(seq 1 1000); do head -c 4096 /dev/urandom > "$d/small/f$i.bin"; done
  local t0 t1
  t0=$(date +%s%N)
  target/release/mega-mount --foreground "$d/mnt" 2>"$d/mount.log" &
  mpid=$!
  until grep -qs " $d/mnt fuse" /proc/mounts; do sleep 0.02; done
  t1=$(date +%s%N)
  echo "== mega-mount (release) against mega-testserver on 127.0.0.1, 2 cores shared"
  printf '%-44s %5d ms  (account of %d nodes)\n' "start to mounted" $(( (t1 - t0) / 1000000 )) 10105
  printf '%-44s %s KiB\n' "mount RSS, mounted" "$(awk '/VmRSS/ {print $2}' /proc/$mpid/status)"
  timed "sequential read 1 GiB, cold (dd bs=1M)" dd if="$d/mnt/big.bin" of=/dev/null bs=1M status=none
  timed "sequential read 1 GiB, again" dd if="$d/mnt/big.bin" of=/dev/null bs=1M status=none
  timed "sequential write 1 GiB (cp, incl. upload)" cp "$d/big.bin" "$d/mnt/big2.bin"
  timed "create 1,000 x 4 KiB files (cp -r)" cp -r "$d/small" "$d/mnt/small"
  timed "ls -lR of 10,000 entries" ls -lR "$d/mnt/tree"
  printf '%-44s %s KiB\n' "mount RSS after all that" "$(awk '/VmRSS/ {print $2}' /proc/$mpid/status)"
  fusermount3 -u "$d/mnt"; wait "$mpid" || true

  # 100,000 nodes: 90 more folders of 1,000 empty files each (uploaded by megacmd).
  mkdir -p "$d/wide"
  for i in $(seq 0 89); do mkdir "$d/wide/w$i"; (cd "$d/wide/w$i" && touch $(seq -f 'f%g' 0 999)); done
  target/release/megacmd put -r "$d/wide" mega:/ >/dev/null 2>&1
  local nodes; nodes=$(target/release/megacmd tree mega:/ 2>/dev/null | wc -l)
  t0=$(date +%s%N)
  target/release/mega-mount --foreground "$d/mnt" 2>"$d/mount.log" &
  mpid=$!
  until grep -qs " $d/mnt fuse" /proc/mounts; do sleep 0.02; done
  t1=$(date +%s%N)
  printf '%-44s %5d ms  (account of %d nodes)\n' "start to mounted" $(( (t1 - t0) / 1000000 )) "$nodes"
  printf '%-44s %s KiB\n' "mount RSS, mounted" "$(awk '/VmRSS/ {print $2}' /proc/$mpid/status)"
  timed "find over all of them" find "$d/mnt" -type f
  printf '%-44s %s KiB\n' "mount RSS after find" "$(awk '/VmRSS/ {print $2}' /proc/$mpid/status)"
}

sync_bench() {
  build_release
  local d; d=$(mktemp -d)
  trap 'kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  start_server "$d"
  export XDG_STATE_HOME="$d/state"
  local m=target/release/megacmd
  $m login >/dev/null 2>&1
  mkdir -p "$d/local" "$d/other"
  for i in $(seq 0 9); do mkdir "$d/local/d$i"; for j in $(seq 0 99); do head -c 4096 /dev/urandom > "$d/local/d$i/f$j.bin"; done; done
  touch -d '-1 minute' "$d"/local/*/*
  echo "== megacmd sync --two-way against mega-testserver on 127.0.0.1 (2 cores shared)"
  timed "first run: upload 1,000 x 4 KiB in 10 folders" $m sync --two-way "$d/local" mega:/s
  timed "second run: nothing to do" $m sync --two-way "$d/local" mega:/s
  # 100 files changed by another client (a second copy synced from the other folder).
  $m sync --two-way "$d/other" mega:/s >/dev/null 2>&1
  for j in $(seq 0 99); do head -c 4096 /dev/urandom > "$d/other/d0/f$j.bin"; done
  touch -d '-1 minute' "$d"/other/d0/*
  $m sync --two-way "$d/other" mega:/s >/dev/null 2>&1
  timed "100 remote changes: downloads (old files to .debris)" $m sync --two-way "$d/local" mega:/s
  mv "$d/local/d1" "$d/local/renamed"
  timed "a folder of 100 files renamed locally" $m sync --two-way "$d/local" mega:/s
}

if [ "$part" = transfers ]; then transfers; exit 0; fi
if [ "$part" = sync ]; then sync_bench; exit 0; fi
if [ "$part" = mount ]; then mount_bench; exit 0; fi

echo "== machine"
nproc
grep -m1 'model name' /proc/cpuinfo || true
grep -m1 -o -w 'aes' /proc/cpuinfo | head -1 | sed 's/^/cpu flag: /' || true

echo "== cargo bench (criterion, release profile)"
cargo bench --bench crypto -- --noplot 2>&1 | grep -E '^content/|time:|thrpt:'

echo "== openssl speed -evp aes-128-cbc (1 core; CBC encryption is a serial chain like CBC-MAC)"
openssl speed -seconds 3 -evp aes-128-cbc 2>/dev/null | tail -3
echo "== openssl speed -evp aes-128-ctr"
openssl speed -seconds 3 -evp aes-128-ctr 2>/dev/null | tail -1

if [ "$part" = all ]; then transfers; mount_bench; sync_bench; fi
