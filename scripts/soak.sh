#!/usr/bin/env bash
# The soak (not run by CI): `scripts/soak.sh MINUTES` (default 10).
#  1. tests/soak.rs for MINUTES: a mount, megacmd and a second account sharing a folder work
#     at once while the test server drops connections, answers 5xx and is restarted, and the
#     mount daemon is killed and started again; then every acknowledged write is checked on
#     the server, every read that returned data was checked as it came, and the keystream
#     audit runs. Its figures (the "SOAK ..." line) go to doc/RELIABILITY.md.
#  2. the model-based test of the filesystem core with a larger budget (MODEL_CASES, 500).
#  3. the generated hostile replies with a larger budget (HOSTILE_CASES, 20000).
# Everything runs on 127.0.0.1 in temporary folders that are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
command -v fusermount3 >/dev/null || { echo "soak: needs fuse3 (fusermount3)" >&2; exit 1; }
log() { printf '\n==> %s\n' "$*"; }

log "soak: ${minutes} minutes of work under faults"
SOAK_MINUTES="$minutes" cargo test --test soak -- --ignored --nocapture 2>&1 \
  | tee /dev/stderr | grep '^SOAK minutes=' || { echo "soak: failed" >&2; exit 1; }

log "model-based test of the filesystem core: ${MODEL_CASES:-500} cases"
FS_MODEL_CASES="${MODEL_CASES:-500}" cargo test --test fs_model

log "generated hostile replies: ${HOSTILE_CASES:-20000} random combinations"
HOSTILE_CASES="${HOSTILE_CASES:-20000}" cargo test --test hostile generated
