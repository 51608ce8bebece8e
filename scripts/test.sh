#!/usr/bin/env bash
# Runs every test: unit and integration tests (on a real broker process), the browser bundle
# build, and the end-to-end tests in headless Chromium against the real server.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
cd "$here"
CHURN_SETUP_BROWSER=1 bash scripts/setup.sh

echo "== format and lints"
cargo fmt --all --check
# frontend is left out here as below; its crate is one hydrate call, built for WASM by build.sh.
cargo clippy --locked --workspace --exclude frontend --all-targets -- -D warnings

echo "== unit and integration tests"
# frontend is left out: building it with the server would compile the app for both sides at once.
cargo test --locked --workspace --exclude frontend

echo "== build (server + WASM bundle)"
bash scripts/build.sh dev
# The end-to-end tests' stand-in for the referee (writes a duel record to the models topic).
cargo build --locked -p server --example publish_duel

echo "== end-to-end tests (Chromium)"
export CHURN_BIN="$CARGO_TARGET_DIR/debug/churn"
(cd end2end && npm test)
