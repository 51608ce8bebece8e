//! Realistic synthetic customers of the original schema, deterministic by seed.
//!
//! We cannot ship the original dataset, so tests, demos and benchmarks run on this. The churn
//! label comes from a hidden logistic relationship (documented below, so tests can check that
//! training recovers it) plus the randomness of the draw itself. Nothing in the model is tuned to
//! it: the trainer knows nothing of these constants.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::features::Feature;
use crate::schema::{Customer, Field};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub rows: usize,
    pub seed: u64,
    /// Share of rows made messy on purpose: missing values, stray spaces, trailing empty
    /// columns, numbers written as "42.0".
    pub messy_fraction: f64,
}

/// The hidden truth: effect on the log-odds of churn per standard deviation of each feature
/// (per yes for Account_Manager).
pub const HIDDEN_COEFFICIENTS: [(Feature, f64); 6] = [
    (Feature::Age, 0.4),
    (Feature::TotalPurchase, 0.25),
    (Feature::AccountManager, -0.6),
    (Feature::Years, 0.7),
    (Feature::NumSites, 1.9),
    (Feature::TenureYears, -0.3),
];
const HIDDEN_INTERCEPT: f64 = -2.6;

/// A hidden relationship between the features and churn: the effect on the log-odds per
/// standard deviation of each feature (per yes for Account_Manager), and the intercept.
/// [`generate_customers`] draws under [`HIDDEN_TRUTH`]; another truth makes a changed world
/// (concept drift, `crate::concept_drift`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HiddenTruth {
    pub coefficients: [(Feature, f64); 6],
    pub intercept: f64,
}

/// The relationship `generate_customers` draws labels from.
pub const HIDDEN_TRUTH: HiddenTruth = HiddenTruth {
    coefficients: HIDDEN_COEFFICIENTS,
    intercept: HIDDEN_INTERCEPT,
};

const FIRST: &[&str] = &[
    "Cameron",
    "Kevin",
    "Kimberly",
    "Joseph",
    "Douglas",
    "Jessica",
    "Sean",
    "Nicole",
    "Patricia",
    "Brian",
    "Amanda",
    "Ashley",
    "Tammy",
    "Lisa",
    "Jennifer",
    "Michael",
    "David",
    "Sarah",
    "Robert",
    "Laura",
    "Daniel",
    "Emily",
    "Andrew",
    "Maria",
    "Thomas",
    "Angela",
    "Christopher",
    "Megan",
    "Anthony",
    "Rachel",
    "Jonathan",
    "Heather",
    "Steven",
    "Melissa",
    "Eric",
    "Stephanie",
    "Jason",
    "Rebecca",
    "Matthew",
    "Samantha",
    "Justin",
    "Christina",
    "Ryan",
    "Brittany",
    "Gregory",
    "Monica",
];
const LAST: &[&str] = &[
    "Williams", "Mueller", "Reed", "Hunter", "Powell", "Rivera", "Smith", "Johnson", "Brown",
    "Jones", "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson", "Anderson", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner",
    "Torres", "Parker", "Collins", "Edwards", "Stewart", "Morris", "Murphy", "Cook", "Rogers",
    "Harvey", "Barker", "Ortiz",
];
const STREETS: &[&str] = &[
    "Mission", "Street", "Avenue", "Road", "Lane", "Court", "Drive", "Place", "Way", "Park",
    "Ports", "Island", "Crossing", "Gardens", "Heights", "Ridge", "Shoals", "Trail", "Valley",
    "Views",
];
const CITY_PATTERNS: &[&str] = &[
    "{}burgh", "{}ville", "Port {}", "{}ton", "New {}", "{}fort", "Lake {}", "East {}", "West {}",
    "North {}", "South {}", "{}side", "{}mouth", "{}haven", "{}berg",
];
const STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY",
];
const COMPANY_PATTERNS: &[&str] = &[
    "{} LLC",
    "{} Inc",
    "{} Ltd",
    "{} PLC",
    "{} Group",
    "{}-{}",
    "{}, {} and {}",
    "{} and Sons",
];

/// The means and spreads the generator draws from (as in a typical B2B customer base).
const AGE: (f64, f64) = (41.8, 6.1);
const PURCHASE: (f64, f64) = (10_062.0, 2_408.0);
const YEARS: (f64, f64) = (5.27, 1.27);
const SITES: (f64, f64) = (8.59, 1.76);
const ACCOUNT_MANAGER_RATE: f64 = 0.48;
const TENURE: (f64, f64) = (5.5, 3.0);

fn first_onboard() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2006, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}
const ONBOARD_SPAN_DAYS: i64 = 11 * 365;

fn normal(rng: &mut impl Rng, (mean, sd): (f64, f64)) -> f64 {
    // Box-Muller: enough for synthetic data, and no extra dependency.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn pick<'a>(rng: &mut impl Rng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn fill(pattern: &str, rng: &mut impl Rng) -> String {
    let mut out = String::new();
    let mut parts = pattern.split("{}").peekable();
    while let Some(part) = parts.next() {
        out.push_str(part);
        if parts.peek().is_some() {
            out.push_str(pick(rng, LAST));
        }
    }
    out
}

fn address(rng: &mut impl Rng) -> String {
    let unit = if rng.gen_bool(0.3) {
        format!(" Apt. {}", rng.gen_range(1..999))
    } else {
        String::new()
    };
    format!(
        "{} {} {}{unit} {}, {} {:05}",
        rng.gen_range(1..99_999),
        pick(rng, LAST),
        pick(rng, STREETS),
        fill(pick(rng, CITY_PATTERNS), rng),
        pick(rng, STATES),
        rng.gen_range(501..99_950),
    )
}

/// Clean customers with labels drawn from the hidden relationship.
pub fn generate_customers(options: &GenerateOptions) -> Vec<Customer> {
    generate_customers_under(options, &HIDDEN_TRUTH)
}

/// Clean customers with labels drawn from `truth`; the features are drawn as always (the same
/// seed gives the same customers, labelled by another relationship).
pub fn generate_customers_under(options: &GenerateOptions, truth: &HiddenTruth) -> Vec<Customer> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let tenure_reference = first_onboard() + Duration::days(ONBOARD_SPAN_DAYS);
    (0..options.rows)
        .map(|_| {
            let age = normal(&mut rng, AGE).clamp(22.0, 65.0).round();
            let total_purchase =
                (normal(&mut rng, PURCHASE).clamp(100.0, 18_026.0) * 100.0).round() / 100.0;
            let account_manager = rng.gen_bool(ACCOUNT_MANAGER_RATE);
            let years = (normal(&mut rng, YEARS).clamp(1.0, 10.0) * 100.0).round() / 100.0;
            let num_sites = normal(&mut rng, SITES).round().clamp(3.0, 14.0) as u32;
            let onboard_date =
                first_onboard() + Duration::seconds(rng.gen_range(0..ONBOARD_SPAN_DAYS * 86_400));
            let tenure = crate::features::tenure_years(onboard_date, tenure_reference);
            let z = truth
                .coefficients
                .iter()
                .fold(truth.intercept, |z, &(feature, beta)| {
                    z + beta
                        * match feature {
                            Feature::Age => (age - AGE.0) / AGE.1,
                            Feature::TotalPurchase => (total_purchase - PURCHASE.0) / PURCHASE.1,
                            Feature::AccountManager => {
                                f64::from(u8::from(account_manager)) - ACCOUNT_MANAGER_RATE
                            }
                            Feature::Years => (years - YEARS.0) / YEARS.1,
                            Feature::NumSites => (f64::from(num_sites) - SITES.0) / SITES.1,
                            Feature::TenureYears => (tenure - TENURE.0) / TENURE.1,
                        }
                });
            let churn = rng.gen_bool(crate::scoring::sigmoid(z));
            Customer {
                name: format!("{} {}", pick(&mut rng, FIRST), pick(&mut rng, LAST)),
                age,
                total_purchase,
                account_manager,
                years,
                num_sites,
                onboard_date,
                location: address(&mut rng),
                company: fill(pick(&mut rng, COMPANY_PATTERNS), &mut rng),
                churn: Some(churn),
            }
        })
        .collect()
}

/// One CSV row, quoted by the `csv` crate and safe to open in a spreadsheet, ending in
/// `line_end` (messy rows end in CRLF, and may carry extra trailing cells).
fn csv_row(cells: &[String], line_end: csv::Terminator) -> String {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(line_end)
        .from_writer(Vec::new());
    crate::spreadsheet::write_record(&mut writer, cells).expect("writing to memory cannot fail");
    let bytes = writer.into_inner().expect("flushing to memory cannot fail");
    String::from_utf8(bytes).expect("the cells are UTF-8 text")
}

/// The generated customers as CSV text in the original column order, messy rows included.
pub fn generate_csv(options: &GenerateOptions) -> String {
    let customers = generate_customers(options);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x6d_65_73_73_79);
    let header: Vec<String> = Field::ALL.iter().map(|f| f.column().to_owned()).collect();
    let mut out = csv_row(&header, csv::Terminator::Any(b'\n'));
    for customer in &customers {
        let mut cells: Vec<String> = Field::ALL.iter().map(|&f| customer.cell(f)).collect();
        let mut line_end = csv::Terminator::Any(b'\n');
        if options.messy_fraction > 0.0 && rng.gen_bool(options.messy_fraction.min(1.0)) {
            match rng.gen_range(0..5) {
                // A missing value in a field the model needs: the row must be reported.
                0 => cells[rng.gen_range(1..6)].clear(),
                // Stray spaces and float-formatted integers, as spreadsheets write them.
                1 => {
                    cells[1] = format!(" {:.1} ", customer.age);
                    cells[5] = format!("{:.1}", f64::from(customer.num_sites));
                }
                // Trailing empty columns, as a spreadsheet export leaves them.
                2 => cells.extend([String::new(), String::new()]),
                // Windows line ending.
                3 => line_end = csv::Terminator::CRLF,
                // The label written as a word.
                _ => {
                    cells[9] = if customer.churn == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .into()
                }
            }
        }
        out.push_str(&csv_row(&cells, line_end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_by_seed() {
        let options = GenerateOptions {
            rows: 50,
            seed: 9,
            messy_fraction: 0.2,
        };
        assert_eq!(generate_csv(&options), generate_csv(&options));
        assert_ne!(
            generate_csv(&options),
            generate_csv(&GenerateOptions {
                seed: 10,
                ..options
            })
        );
    }

    #[test]
    fn hostile_text_is_written_as_text() {
        let hostile = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-1+2",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ];
        for (i, text) in hostile.iter().enumerate() {
            let cells = vec![text.to_string(), "42".into(), text.to_string()];
            let row = csv_row(&cells, csv::Terminator::Any(b'\n'));
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(row.as_bytes());
            let read = reader.records().next().unwrap().unwrap();
            let expected = format!("'{text}");
            assert_eq!(
                read.iter().collect::<Vec<_>>(),
                [&expected, "42", &expected],
                "{i}"
            );
        }
    }

    #[test]
    fn no_generated_cell_starts_a_formula() {
        let text = generate_csv(&GenerateOptions {
            rows: 2000,
            seed: 3,
            messy_fraction: 0.3,
        });
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !cell.starts_with(crate::spreadsheet::FORMULA_STARTS),
                    "{cell:?}"
                );
            }
        }
    }

    #[test]
    fn churn_rate_is_plausible_and_addresses_have_commas() {
        let customers = generate_customers(&GenerateOptions {
            rows: 5000,
            seed: 1,
            messy_fraction: 0.0,
        });
        let rate = customers.iter().filter(|c| c.churn == Some(true)).count() as f64 / 5000.0;
        assert!((0.12..0.24).contains(&rate), "churn rate {rate}");
        assert!(customers.iter().all(|c| c.location.contains(", ")));
        assert!(customers.iter().any(|c| c.company.contains(',')));
    }
}
