#!/usr/bin/env bash
# Runs the product: installs what is missing, builds (release), starts the embedded broker,
# generates data and trains a model if there is none (or it does not verify), then serves the
# web app with a live replay.
# Extra arguments go to `churn serve`, e.g. --brokers HOST:PORT for your own Kafka cluster.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
cd "$here"
bash scripts/setup.sh
bash scripts/build.sh release
churn="$CARGO_TARGET_DIR/release/churn"
data="${CHURN_DATA_DIR:-$here/data}"
if [ ! -f "$data/customers.csv" ]; then
  "$churn" generate --rows 900 --output "$data/customers.csv"
fi
# Retrain when the model is missing, from an older program, or changed after training.
if ! "$churn" model info "$data/model.json" >/dev/null 2>&1; then
  "$churn" train --input "$data/customers.csv" --output "$data/model.json"
fi
# --login-link: a fresh one-time admin sign-in address on every start (Jupyter-style).
exec "$churn" serve --data-dir "$data" --model "$data/model.json" \
  --replay "$data/customers.csv" --site-root "$CHURN_SITE_ROOT" --login-link "$@"
