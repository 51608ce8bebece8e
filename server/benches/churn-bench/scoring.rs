//! The model and the per-record path alone, in memory: no broker.

use std::time::Instant;

use model::Customer;
use server::replay::to_wire;

use crate::{line, row};

pub fn scoring(model: &model::ChurnModel, customers: &[Customer], repeat: usize) {
    let n = 1_000_000;
    let (mut single, mut batched) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let started = Instant::now();
        let mut sink = 0.0;
        for i in 0..n {
            sink += model
                .score(&customers[i % customers.len()], model.reference_date)
                .probability;
        }
        single.push(n as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let batch: Vec<f64> = (0..n)
            .map(|i| model.probability(&customers[i % customers.len()], model.reference_date))
            .collect();
        batched.push(n as f64 / started.elapsed().as_secs_f64());
        std::hint::black_box((sink, batch));
    }
    row("model alone: score + explain, per record", "rows/s", single);
    row("model alone: probability, batched", "rows/s", batched);
    // What the scorer does per record besides Kafka: JSON in, validation, score, JSON out.
    let payloads: Vec<Vec<u8>> = customers
        .iter()
        .map(|c| serde_json::to_vec(&to_wire(&c.to_raw())).expect("serializes"))
        .collect();
    let mut records = Vec::new();
    let (n, mut bytes) = (300_000, 0);
    for _ in 0..repeat {
        let started = Instant::now();
        bytes = 0;
        for i in 0..n {
            let payload = &payloads[i % payloads.len()];
            let json = server::scorer::score_payload(
                &i.to_string(),
                Some(payload),
                model,
                "2026-01-01T00:00:00.000Z",
            );
            bytes += json.expect("a valid record").len();
        }
        records.push(n as f64 / started.elapsed().as_secs_f64());
    }
    row(
        "record in memory: parse, validate, score, explain, serialize",
        "records/s",
        records,
    );
    let input_bytes: usize = payloads.iter().map(Vec::len).sum();
    line(
        "message size, input / prediction (mean)",
        format!("{} / {}", input_bytes / payloads.len(), bytes / n),
        "",
        "bytes",
    );
}
