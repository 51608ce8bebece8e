//! Messages the pipeline writes, shared by the scorer, the web server and the browser.

use serde::{Deserialize, Serialize};

use crate::features::Feature;
use crate::model_file::ChurnModel;
use crate::schema::Customer;
use crate::scoring::{Contribution, Score};
use crate::segments::Segments;

/// How many contributing factors a prediction carries.
pub const TOP_FACTORS: usize = 3;

/// The challenger's score of a record, carried beside the champion's prediction for the duel.
/// Never shown to users: the web app and its API strip it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowScore {
    pub model_version: String,
    pub churn_probability: f64,
}

/// A scored customer, as published on the predictions topic (`test3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The record id: the input message's key, or topic-partition-offset when it had none.
    pub id: String,
    pub name: String,
    pub churn_probability: f64,
    pub churn: bool,
    pub threshold: f64,
    pub model_version: String,
    /// RFC 3339.
    pub scored_at: String,
    /// The largest contributions, in numbers; `Contribution::describe` puts one in words. The
    /// sentences are not sent: they were a fifth of the message.
    pub top_factors: Vec<Contribution>,
    /// The true label when the record carried one (replayed history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_churn: Option<bool>,
    /// The customer's segments, for stream analytics downstream.
    #[serde(default)]
    pub segments: Segments,
    /// Inputs outside the model's training range (`Score::extrapolated`); absent when none,
    /// and in messages written before ranges existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extrapolated: Vec<Feature>,
    /// The challenger's score of the same record, for the live duel (`lifecycle`); absent when
    /// no challenger is published. Users never see it: the web app and its API strip it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger: Option<ShadowScore>,
}

impl Prediction {
    /// The prediction as users see it: without the challenger's shadow score.
    pub fn for_users(mut self) -> Self {
        self.challenger = None;
        self
    }

    pub fn new(
        id: String,
        customer: &Customer,
        model: &ChurnModel,
        score: &Score,
        scored_at: String,
        as_of: chrono::NaiveDateTime,
    ) -> Self {
        Prediction {
            id,
            name: customer.name.clone(),
            churn_probability: score.probability,
            churn: score.churn,
            threshold: model.threshold,
            model_version: model.version.clone(),
            scored_at,
            top_factors: score
                .contributions
                .iter()
                .take(TOP_FACTORS)
                // Four decimals of log-odds explain as well as seventeen, in fewer bytes.
                .map(|c| Contribution {
                    log_odds: (c.log_odds * 1e4).round() / 1e4,
                    ..*c
                })
                .collect(),
            actual_churn: customer.churn,
            segments: Segments::of(customer, as_of),
            extrapolated: score.extrapolated.clone(),
            challenger: None,
        }
    }
}

/// The label a labels-topic (outcomes) message carries: `{"Churn": 1}`, or a whole record with
/// its `Churn`, read with the same rules as the input's `Churn` field. None when it carries none.
/// The one reading of an outcome, for the analytics, the referee and `churn retrain`.
pub fn outcome_label(payload: &[u8]) -> Option<bool> {
    let raw: crate::RawCustomer = serde_json::from_slice(payload).ok()?;
    match crate::validate_field(crate::Field::Churn, raw.churn.as_ref()) {
        Ok(crate::validate::FieldValue::Flag(churned)) => Some(churned),
        _ => None,
    }
}
