#!/usr/bin/env python3
"""Parity check (dev tool, not in CI): our `churn train` against scikit-learn on the same CSV,
the same five numeric features and the same stratified folds. Prints both ROC-AUCs side by side.

    python3 tools/parity.py [--rows 900] [--seed 42] [--csv FILE]

Installs scikit-learn and pandas into tools/.venv on first use.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
from pyvenv import ensure_venv  # noqa: E402  (beside this script)
VENV = os.path.join(HERE, ".venv")
FEATURES = ["Age", "Total_Purchase", "Account_Manager", "Years", "Num_Sites"]


def main():
    ensure_venv(VENV, ["scikit-learn", "pandas"])
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score, accuracy_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=900)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--csv", help="a labelled customer CSV (default: generate one)")
    parser.add_argument("--churn", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/customer-churn/target")), "release", "churn"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="churn-parity-")
    csv = args.csv or os.path.join(work, "customers.csv")
    if not args.csv:
        subprocess.check_call([args.churn, "generate", "--rows", str(args.rows), "--seed", str(args.seed), "--output", csv])
    model_path, folds_path = os.path.join(work, "model.json"), os.path.join(work, "folds.csv")
    subprocess.check_call([args.churn, "train", "--input", csv, "--output", model_path, "--features", ",".join(FEATURES),
                           "--export-folds", folds_path], stdout=subprocess.DEVNULL)
    ours = json.load(open(model_path))["metrics"]

    data = pd.read_csv(csv)
    data = data.dropna(subset=FEATURES + ["Churn"])
    x, y = data[FEATURES].to_numpy(dtype=float), data["Churn"].to_numpy(dtype=int)
    folds = pd.read_csv(folds_path)["fold"].to_numpy()
    assert len(folds) == len(y), "fold file and CSV disagree on the rows"
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
    split = PredefinedSplit(folds)
    proba = cross_val_predict(model, x, y, cv=split, method="predict_proba")[:, 1]
    fold_auc = [roc_auc_score(y[folds == k], proba[folds == k]) for k in range(folds.max() + 1)]

    print(f"{'':28} {'churn (linfa)':>14} {'scikit-learn':>14} {'difference':>11}")
    rows = [
        ("ROC-AUC, mean of folds", float(np.mean(ours["fold_roc_auc"])), float(np.mean(fold_auc))),
        ("ROC-AUC, pooled", ours["roc_auc"], roc_auc_score(y, proba)),
        ("accuracy at 0.5", None, accuracy_score(y, proba >= 0.5)),
    ]
    for name, a, b in rows:
        a_text = f"{a:14.4f}" if a is not None else f"{'':>14}"
        diff = f"{abs(a - b):11.4f}" if a is not None else ""
        print(f"{name:28} {a_text} {b:14.4f} {diff}")
    gap = abs(float(np.mean(ours["fold_roc_auc"])) - float(np.mean(fold_auc)))
    print(f"\nparity {'OK' if gap <= 0.01 else 'FAILED'}: ROC-AUC gap {gap:.4f} (allowed 0.01)")
    sys.exit(0 if gap <= 0.01 else 1)


if __name__ == "__main__":
    main()
