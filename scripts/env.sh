# Shared environment for the project's scripts (sourced, not run).
export CHURN_TOOLS="${CHURN_TOOLS:-$HOME/.cache/customer-churn/tools}"
export WASM_BINDGEN_VERSION=0.2.130
export NISSHI_VERSION=0.8.1
# wasm-opt for the release bundle, from npm (Debian's binaryen is too old for today's WASM).
export BINARYEN_VERSION=132.0.0
# One target dir outside the clone, shared by every step, so CI reuses warm artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/customer-churn/target}"
export PATH="$CHURN_TOOLS/bin:$PATH"
# The built site (WASM bundle, CSS, assets) the web server serves.
export CHURN_SITE_ROOT="${CHURN_SITE_ROOT:-$CARGO_TARGET_DIR/site}"
