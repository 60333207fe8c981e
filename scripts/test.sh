#!/usr/bin/env bash
# The project's test command (what CI runs): installs what the tests need, then runs the format
# check, clippy with warnings as errors, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# The build and the tests need disk: about 4 GB for a clean build of every test binary, plus
# the test servers' stores and the mounts' staging files (a few hundred MB at a time). A full
# disk shows up as ENOSPC in the mount tests and "temporary failure" from the test server, so
# say how much there is first.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
tmp_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
log "disk free: $((free_kb / 1024)) MB here, $((tmp_kb / 1024)) MB in ${TMPDIR:-/tmp}"
if [ "$free_kb" -lt $((6 * 1024 * 1024)) ] || [ "$tmp_kb" -lt $((2 * 1024 * 1024)) ]; then
  echo "warning: less than 6 GB free for the build or 2 GB for temporary files; tests may fail with ENOSPC" >&2
fi
# On a failure, how much was left (a full disk is otherwise hard to tell from a bug).
trap 'rc=$?; [ $rc = 0 ] || df -Ph . "${TMPDIR:-/tmp}" >&2' EXIT

# System packages: Node.js + npm for the megajs interop test, Python for the pty tests, fuse3
# (fusermount3) for the mount tests.
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)   # drives megacmd in a pseudo-terminal
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)  # the FUSE mount tests
command -v rsync >/dev/null 2>&1 || need+=(rsync)        # rsync onto the mount
command -v git >/dev/null 2>&1 || need+=(git)            # git commit inside the mount
[ -e /usr/include/sys/acl.h ] || need+=(libacl1-dev)      # builds pjdfstest (POSIX suite)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)   # builds the mega-rs interop driver
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v man >/dev/null 2>&1 || need+=(man-db)                  # the package test reads the man pages
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)     # ... and verifies the unit
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)               # videos' thumbnails and media attributes
command -v make >/dev/null 2>&1 || need+=(make)                   # builds jemalloc (the mount's allocator)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# npm packages for the interop tests (megajs), installed from package-lock.json.
if [ -f tests/interop/package.json ]; then
  log "npm install (tests/interop)"
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi

# pjdfstest (the Rust rewrite of the POSIX filesystem suite), run against a real mount by
# tests/pjdfstest.rs; installed once under target/tools (about 40 s to build).
PJDFSTEST_VERSION=0.2.2
if ! [ -x target/tools/bin/pjdfstest ] || ! grep -qs "$PJDFSTEST_VERSION" target/tools/.pjdfstest-version; then
  log "cargo install pjdfstest $PJDFSTEST_VERSION"
  cargo install pjdfstest --version "$PJDFSTEST_VERSION" --locked --quiet --root target/tools
  echo "$PJDFSTEST_VERSION" > target/tools/.pjdfstest-version
fi
export PJDFSTEST="$PWD/target/tools/bin/pjdfstest"
[ "$(id -u)" = 0 ] && export MEGA_REQUIRE_PJDFSTEST=1

# The crate `mega` (an independent Rust MEGA client that reads the key manager), driven by
# tests/interop_mega_rs.rs; built once under target/tools/build (a no-op when unchanged).
log "cargo build tests/interop/mega-rs"
cargo build --release --locked --quiet --manifest-path tests/interop/mega-rs/Cargo.toml \
  --target-dir target/tools/build
export MEGA_RS_DRIVER="$PWD/target/tools/build/release/mega-rs-driver"
export MEGA_REQUIRE_MEGA_RS=1

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test"
cargo test --workspace --all-targets "$@"

# The Debian package, installed and used as a user would (root and /dev/fuse: dpkg -i, mount
# through fstab lines, removal); reuses the test build's binaries.
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  log "package test"
  scripts/test-package.sh --profile dev
else
  log "package test skipped (needs root and /dev/fuse)"
fi
