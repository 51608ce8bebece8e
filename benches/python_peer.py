#!/usr/bin/env python3
"""The Python original's shape, as the benchmark's peer: kafka-python consumes the input topic,
builds a pandas DataFrame per record, scores it with scikit-learn's predict_proba and produces
the result. Run by churn-bench (--python); installs its packages into benches/.venv on first use.

    python3 benches/python_peer.py --brokers HOST:PORT --csv customers.csv [--records 3000]
"""
import argparse
import json
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from pyvenv import ensure_venv  # noqa: E402  (the shared venv helper)
VENV = os.path.join(HERE, ".venv")
FEATURES = ["Age", "Total_Purchase", "Account_Manager", "Years", "Num_Sites"]


def main():
    ensure_venv(VENV, ["kafka-python", "pandas", "scikit-learn"])
    import pandas as pd
    from kafka import KafkaConsumer, KafkaProducer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--records", type=int, default=3000)
    args = parser.parse_args()

    data = pd.read_csv(args.csv).dropna(subset=FEATURES + ["Churn"])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(data[FEATURES], data["Churn"])
    rows = data.drop(columns=["Churn"]).to_dict(orient="records")

    run = uuid.uuid4().hex[:8]
    topic_in, topic_out = f"py-in-{run}", f"py-out-{run}"
    producer = KafkaProducer(bootstrap_servers=args.brokers, value_serializer=lambda v: json.dumps(v).encode())
    for i in range(args.records):
        producer.send(topic_in, rows[i % len(rows)])
    producer.flush()

    consumer = KafkaConsumer(topic_in, bootstrap_servers=args.brokers, group_id=f"py-{run}",
                             auto_offset_reset="earliest", value_deserializer=lambda v: json.loads(v))
    done = 0
    started = None
    for message in consumer:
        if started is None:
            started = time.perf_counter()
        frame = pd.DataFrame([message.value])
        probability = model.predict_proba(frame[FEATURES])[0][1]
        producer.send(topic_out, {"Names": message.value["Names"], "churn_probability": float(probability)})
        done += 1
        if done >= args.records:
            break
    producer.flush()
    elapsed = time.perf_counter() - started
    print(f"records_per_second={done / elapsed:.1f}")


if __name__ == "__main__":
    main()
