//! Reading customer CSV files as they come from the real world: quoted commas, trailing empty
//! columns, CRLF, a UTF-8 BOM, columns in any order (matched by header), unknown columns ignored.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use model::{validate, Customer, Field, RawCustomer, ValidationErrors};

/// One data row and where it came from.
#[derive(Debug, Clone)]
pub struct CsvRow {
    /// 1-based line number in the file, for error messages.
    pub line: u64,
    /// Byte offset in the file, for progress bars.
    pub byte: u64,
    pub raw: RawCustomer,
}

/// A row that could not be used, with its line and the reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RowError {
    #[error("line {line}: unreadable CSV: {message}")]
    Malformed { line: u64, message: String },
    #[error("line {line}: {errors}")]
    Invalid { line: u64, errors: ValidationErrors },
}

pub struct CustomerCsv<R: Read> {
    reader: csv::Reader<R>,
    columns: Vec<Option<Field>>,
}

impl CustomerCsv<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Self::new(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
    }
}

impl<R: Read> CustomerCsv<R> {
    pub fn new(input: R) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let headers = reader
            .headers()
            .context("the file has no header row")?
            .clone();
        let columns: Vec<Option<Field>> = headers.iter().map(Field::from_column).collect();
        let missing: Vec<&str> = Field::ALL
            .iter()
            .filter(|&&f| f != Field::Churn && !columns.contains(&Some(f)))
            .map(|f| f.column())
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing column(s) {}: the header must name {} (found: {})",
                missing.join(", "),
                Field::ALL.map(|f| f.column()).join(", "),
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(CustomerCsv { reader, columns })
    }

    pub fn has_labels(&self) -> bool {
        self.columns.contains(&Some(Field::Churn))
    }

    /// The rows as loose records; a row the CSV parser cannot read is an error, not the end.
    pub fn rows(&mut self) -> impl Iterator<Item = Result<CsvRow, RowError>> + '_ {
        let columns = self.columns.clone();
        self.reader
            .records()
            .filter_map(move |record| match record {
                Ok(record) => {
                    let (line, byte) = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    // A blank line (or only empty cells) is not a customer.
                    if record.iter().all(|cell| cell.trim().is_empty()) {
                        return None;
                    }
                    let cells = columns
                        .iter()
                        .zip(record.iter())
                        .filter_map(|(field, cell)| field.map(|f| (f, cell)));
                    Some(Ok(CsvRow {
                        line,
                        byte,
                        raw: RawCustomer::from_text_cells(cells),
                    }))
                }
                Err(e) => Some(Err(RowError::Malformed {
                    line: e.position().map_or(0, |p| p.line()),
                    message: e.to_string(),
                })),
            })
    }

    /// Validated customers; bad rows are returned separately, each with its line and reason.
    pub fn customers(&mut self) -> (Vec<Customer>, Vec<RowError>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for row in self.rows() {
            match row.and_then(|row| {
                validate(&row.raw).map_err(|errors| RowError::Invalid {
                    line: row.line,
                    errors,
                })
            }) {
                Ok(customer) => good.push(customer),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::synth::{generate_csv, GenerateOptions};

    #[test]
    fn every_row_of_a_generated_file_validates() {
        let text = generate_csv(&GenerateOptions {
            rows: 500,
            seed: 3,
            messy_fraction: 0.0,
        });
        let (good, bad) = CustomerCsv::new(text.as_bytes()).unwrap().customers();
        assert_eq!((good.len(), bad.len()), (500, 0), "{bad:?}");
    }

    #[test]
    fn messy_files_keep_every_usable_row_and_report_the_rest_by_line() {
        let text = generate_csv(&GenerateOptions {
            rows: 400,
            seed: 5,
            messy_fraction: 0.3,
        });
        let (good, bad) = CustomerCsv::new(text.as_bytes()).unwrap().customers();
        assert_eq!(good.len() + bad.len(), 400);
        assert!(!bad.is_empty() && bad.len() < 60, "{}", bad.len());
        for e in &bad {
            let message = e.to_string();
            assert!(
                message.starts_with("line ") && message.contains("missing"),
                "{message}"
            );
        }
    }

    #[test]
    fn bom_crlf_reordered_and_unknown_columns_are_handled() {
        let text = "\u{feff}Company,Names,Unnamed: 0,Age,Total_Purchase,Account_Manager,Years,Num_Sites,Onboard_date,Location,\r\n\
                    \"Harvey, Smith and Lee\",Ann Lee,7,42,1000.5,1,3.5,8,2013-08-30 07:00:40,\"1 Main St Townsville, AK 00501\",,\r\n\
                    \r\n";
        let mut csv = CustomerCsv::new(text.as_bytes()).unwrap();
        assert!(!csv.has_labels());
        let (good, bad) = csv.customers();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good[0].company, "Harvey, Smith and Lee");
        assert_eq!(good[0].location, "1 Main St Townsville, AK 00501");
        assert_eq!(good[0].churn, None);
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = CustomerCsv::new("Names,Age\nA,3\n".as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing column(s) Total_Purchase"), "{err}");
    }
}
