#!/usr/bin/env bash
# Benchmarks, printed as numbers for doc/BENCHMARKS.md.
# Today: content crypto per core (criterion), beside OpenSSL's AES-128-CBC on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

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
