#!/usr/bin/env bash
# The demo: builds, starts a local mega-testserver with a demo account and runs the MEGA
# engine against it (login, upload, list, verified download, events, public link).
# Pass --serve to keep the server running for other MEGA clients afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --example demo -- "$@"
