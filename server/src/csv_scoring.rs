//! Offline scoring of a CSV file: probability, label and top factors per customer. Every cell
//! is written through `model::spreadsheet`, so the output opens safely in a spreadsheet.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use model::spreadsheet::write_record;
use model::{validate, ChurnModel, Field};

use crate::csv_io::{CustomerCsv, RowError};

#[derive(Debug, Default)]
pub struct BatchSummary {
    pub scored: u64,
    /// Rows skipped, each with its line number and reason.
    pub bad: Vec<RowError>,
}

/// Scores every valid row of `input` into `output`; bad rows are skipped and returned.
pub fn score_file(
    model: &ChurnModel,
    input: &Path,
    output: &Path,
    show_progress: bool,
) -> Result<BatchSummary> {
    let size = std::fs::metadata(input)
        .with_context(|| format!("cannot open {}", input.display()))?
        .len();
    let mut csv = CustomerCsv::open(input)?;
    let mut writer = csv::Writer::from_path(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let mut header: Vec<&str> = Field::ALL
        .iter()
        .filter(|&&f| f != Field::Churn)
        .map(|f| f.column())
        .collect();
    header.extend([
        "line",
        "churn_probability",
        "churn_predicted",
        "model_version",
        "top_factors",
    ]);
    write_record(&mut writer, &header)?;

    let bar = if show_progress {
        ProgressBar::new(size).with_style(
            ProgressStyle::with_template("{spinner} scoring [{bar:40}] {percent}% ({eta}) {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut summary = BatchSummary::default();
    // Tenure is measured to the time of scoring, one moment for the whole file.
    let as_of = chrono::Utc::now().naive_utc();
    for row in csv.rows() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                summary.bad.push(e);
                continue;
            }
        };
        bar.set_position(row.byte);
        let customer = match validate(&row.raw) {
            Ok(customer) => customer,
            Err(errors) => {
                summary.bad.push(RowError::Invalid {
                    line: row.line,
                    errors,
                });
                continue;
            }
        };
        let score = model.score(&customer, as_of);
        let top =
            &score.contributions[..score.contributions.len().min(model::message::TOP_FACTORS)];
        let mut record: Vec<String> = Field::ALL
            .iter()
            .filter(|&&f| f != Field::Churn)
            .map(|&f| customer.cell(f))
            .collect();
        record.extend([
            row.line.to_string(),
            format!("{:.6}", score.probability),
            u8::from(score.churn).to_string(),
            model.version.clone(),
            model::describe_all(top),
        ]);
        write_record(&mut writer, &record)?;
        summary.scored += 1;
        bar.set_message(format!(
            "{} scored, {} bad",
            summary.scored,
            summary.bad.len()
        ));
    }
    writer
        .flush()
        .with_context(|| format!("writing {}", output.display()))?;
    bar.finish_and_clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::synth::{generate_csv, GenerateOptions};

    /// Customers named, addressed and employed by formulas: every cell of the output is text.
    #[test]
    fn hostile_text_in_every_text_column_is_written_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let output = dir.path().join("out.csv");
        let hostile = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1:A9)",
            "-cmd|' /C calc'!A0",
        ];
        let options = GenerateOptions {
            rows: 60,
            seed: 4,
            messy_fraction: 0.0,
        };
        let customers = model::synth::generate_customers(&options);
        // Written raw, as someone else's tool would.
        let mut raw = csv::Writer::from_path(&input).unwrap();
        raw.write_record(Field::ALL.iter().map(|f| f.column()))
            .unwrap();
        for (i, customer) in customers.iter().enumerate() {
            let mut customer = customer.clone();
            let text = hostile[i % hostile.len()];
            customer.name = text.into();
            customer.location = text.into();
            customer.company = text.into();
            raw.write_record(Field::ALL.iter().map(|&f| customer.cell(f)))
                .unwrap();
        }
        raw.flush().unwrap();
        let model =
            model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();

        let summary = score_file(&model, &input, &output, false).unwrap();
        assert_eq!(summary.scored, 60, "{:?}", summary.bad);
        let mut reader = csv::Reader::from_path(&output).unwrap();
        let columns = reader.headers().unwrap().clone();
        for (i, record) in reader.records().enumerate() {
            let record = record.unwrap();
            for (column, cell) in columns.iter().zip(record.iter()) {
                assert!(
                    !cell.starts_with(model::spreadsheet::FORMULA_STARTS),
                    "{column}: {cell:?}"
                );
            }
            let expected = format!("'{}", hostile[i % hostile.len()]);
            for column in [0, 7, 8] {
                assert_eq!(&record[column], expected, "{}", &columns[column]);
            }
        }
    }

    #[test]
    fn a_file_is_scored_and_bad_rows_are_reported_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let output = dir.path().join("out.csv");
        let options = GenerateOptions {
            rows: 300,
            seed: 8,
            messy_fraction: 0.3,
        };
        std::fs::write(&input, generate_csv(&options)).unwrap();
        let customers = model::synth::generate_customers(&options);
        let model =
            model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();

        let summary = score_file(&model, &input, &output, false).unwrap();
        assert!(!summary.bad.is_empty());
        assert_eq!(summary.scored as usize + summary.bad.len(), 300);
        let mut reader = csv::Reader::from_path(&output).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len() as u64, summary.scored);
        let probability: f64 = rows[0][10].parse().unwrap();
        assert!((0.0..=1.0).contains(&probability));
        assert!(rows[0][13].contains("churn risk"));
        for bad in &summary.bad {
            assert!(bad.to_string().starts_with("line "));
        }
    }
}
