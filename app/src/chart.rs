//! One SVG chart, drawn in Rust: throughput as bars and churn rate (0–100%) as a line.

use leptos::prelude::*;

/// One column of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub count: u64,
    /// Churn rate to plot for this column, if any.
    pub rate: Option<f64>,
}

/// Columns are right-aligned in `slots` places, so a filling history grows from "now".
#[component]
pub fn RateChart(
    columns: Vec<Column>,
    slots: usize,
    #[prop(into)] id: String,
    #[prop(into)] aria_label: String,
    /// Top-left label, from the tallest column's count.
    max_label: Box<dyn Fn(f64) -> String + Send>,
    #[prop(into)] rate_label: String,
    #[prop(into)] start_label: String,
) -> impl IntoView {
    const W: f64 = 900.0;
    const H: f64 = 170.0;
    const PAD: f64 = 30.0;
    let max = columns.iter().map(|c| c.count).max().unwrap_or(0).max(1) as f64;
    let step = (W - 2.0 * PAD) / slots.max(columns.len()).max(1) as f64;
    let x0 = W - PAD - columns.len() as f64 * step;
    let bars = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let h = (H - 2.0 * PAD) * c.count as f64 / max;
            view! { <rect class="tp" x=format!("{:.1}", x0 + i as f64 * step) y=format!("{:.1}", H - PAD - h)
                    width=format!("{:.2}", (step * 0.88).max(1.0)) height=format!("{h:.1}")/> }
        })
        .collect_view();
    let line: Vec<String> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.rate.map(|rate| {
                format!(
                    "{:.1},{:.1}",
                    x0 + (i as f64 + 0.45) * step,
                    H - PAD - rate * (H - 2.0 * PAD)
                )
            })
        })
        .collect();
    view! {
        <svg class="chart" id=id viewBox=format!("0 0 {W} {H}") role="img" aria-label=aria_label>
            <line class="axis" x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD/>
            <text class="label" x=PAD y=14.0>{max_label(max)}</text>
            <text class="label rate" x=W - PAD y=14.0 text-anchor="end">{rate_label}</text>
            <text class="label" x=PAD y=H - 8.0>{start_label}</text>
            <text class="label" x=W - PAD y=H - 8.0 text-anchor="end">"now"</text>
            {bars}
            <polyline class="rate" points=line.join(" ")/>
        </svg>
    }
}
