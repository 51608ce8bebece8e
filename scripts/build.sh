#!/usr/bin/env bash
# Builds the whole product: the `churn` server binary and the browser bundle (WASM + JS + CSS).
# Usage: scripts/build.sh [dev|release]   (release: optimized server and size-optimized WASM)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
cd "$here"
mode="${1:-dev}"
case "$mode" in
  dev) server_flags=(); wasm_profile=dev; wasm_dir=debug; bindgen_flags=() ;;
  # Function names are half the raw bundle; a release build has no use for them.
  release) server_flags=(--release); wasm_profile=wasm-release; wasm_dir=wasm-release
           bindgen_flags=(--remove-name-section --remove-producers-section) ;;
  *) echo "usage: $0 [dev|release]" >&2; exit 2 ;;
esac
site="$CHURN_SITE_ROOT"

echo "[build] browser bundle ($mode)"
cargo build --locked -p frontend --lib --target wasm32-unknown-unknown --profile "$wasm_profile"
mkdir -p "$site/pkg"
wasm-bindgen --target web --no-typescript "${bindgen_flags[@]}" --out-dir "$site/pkg" --out-name churn \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$wasm_dir/frontend.wasm"
if [ "$mode" = release ]; then
  # -O1 with dead-argument elimination: -Oz gives fewer raw bytes but more gzipped ones
  # (measured: 240 KiB vs 260 KiB gzipped), and the gzipped size is what a browser downloads.
  # The features are those rustc enables by default for wasm32-unknown-unknown.
  "$CHURN_TOOLS/binaryen/node_modules/.bin/wasm-opt" -O1 --dae-optimizing \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$site/pkg/churn_bg.wasm" -o "$site/pkg/churn_bg.wasm"
fi
cp style/main.css "$site/pkg/churn.css"
cp -r public/. "$site/"

echo "[build] server ($mode)"
cargo build --locked -p server "${server_flags[@]}"
wasm="$site/pkg/churn_bg.wasm"
printf '[build] WASM bundle: %s KiB raw, %s KiB gzipped\n' \
  "$(( $(stat -c %s "$wasm") / 1024 ))" "$(( $(gzip -9c "$wasm" | wc -c) / 1024 ))"
