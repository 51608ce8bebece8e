#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine of this kind, once.
# Tools are cached outside the clone (CHURN_TOOLS) so later runs and CI reuse them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
source "$here/scripts/env.sh"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# Debian packages the build and tests need: OpenSSL headers for librdkafka's SASL/TLS (rdkafka's
# "ssl" feature), pkg-config to find them, curl for the HTTPS test. Seconds when present.
missing=()
for package in libssl-dev pkg-config curl; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$here/rust-toolchain.toml")"
if ! rustup toolchain list | grep -q "^$toolchain"; then
  log "installing Rust $toolchain (+wasm32)"
  rustup toolchain install "$toolchain" --profile minimal --target wasm32-unknown-unknown
elif ! rustup +"$toolchain" target list --installed | grep -q wasm32-unknown-unknown; then
  rustup +"$toolchain" target add wasm32-unknown-unknown
fi
# rustfmt and clippy: the test command checks formatting and lints (seconds to install).
installed="$(rustup +"$toolchain" component list --installed)"
if ! grep -q '^clippy' <<<"$installed" || ! grep -q '^rustfmt' <<<"$installed"; then
  log "installing rustfmt and clippy"
  rustup component add rustfmt clippy --toolchain "$toolchain"
fi

mkdir -p "$CHURN_TOOLS/bin"
if ! "$CHURN_TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "building wasm-bindgen-cli $WASM_BINDGEN_VERSION (~4 min, once)"
  cargo +"$toolchain" install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$CHURN_TOOLS" --force
fi

if ! [ -x "$CHURN_TOOLS/bin/nisshi" ]; then
  log "building the embedded Kafka-compatible broker nisshi $NISSHI_VERSION (~36 min on 2 cores, once)"
  cargo +"$toolchain" install nisshi --version "=$NISSHI_VERSION" --locked --no-default-features \
    --features dynostore,libsql --root "$CHURN_TOOLS"
fi

binaryen="$CHURN_TOOLS/binaryen"
if ! [ -f "$binaryen/node_modules/binaryen/package.json" ] ||
   ! grep -q "\"version\": \"$BINARYEN_VERSION\"" "$binaryen/node_modules/binaryen/package.json"; then
  log "installing wasm-opt (npm binaryen $BINARYEN_VERSION)"
  mkdir -p "$binaryen"
  npm install --prefix "$binaryen" --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION"
fi

if [ "${CHURN_SETUP_BROWSER:-0}" = 1 ]; then
  if ! [ -x /usr/bin/chromium ]; then
    log "installing Debian chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
  if ! [ -d "$here/end2end/node_modules/playwright-core" ]; then
    log "installing end2end npm packages"
    (cd "$here/end2end" && npm ci --no-audit --no-fund --silent)
  fi
fi
log "tools ready in $CHURN_TOOLS"
