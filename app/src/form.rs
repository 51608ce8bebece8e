//! The churn form: every field of the schema, validated as the user types with the very rules
//! the scorer uses (the `model` crate, compiled to WASM).

use leptos::prelude::*;
use model::validate::{AGE_RANGE, NUM_SITES_MAX, TOTAL_PURCHASE_MAX, YEARS_MAX};
use model::{validate_field, Field, RawCustomer, Scalar};

/// How a field is entered.
#[derive(Clone, Copy)]
enum Input {
    Text {
        placeholder: &'static str,
    },
    Number {
        min: f64,
        max: f64,
        step: &'static str,
    },
    YesNo,
    DateTime,
}

/// The line under a field.
#[derive(Clone, Copy)]
enum Hint {
    Text(&'static str),
    /// The text, then the range a number field accepts: "Years, 16–110".
    WithRange(&'static str),
}

struct Spec {
    field: Field,
    label: &'static str,
    hint: Hint,
    input: Input,
}

impl Spec {
    fn hint(&self) -> String {
        match (self.hint, self.input) {
            (Hint::WithRange(text), Input::Number { min, max, .. }) => {
                format!("{text}, {min}–{max}")
            }
            (Hint::Text(text) | Hint::WithRange(text), _) => text.to_owned(),
        }
    }
}

/// The number fields' bounds are validation's (`model::validate`): the browser's own checks and
/// the hints agree with the rules the form and the scorer apply.
const SPECS: [Spec; 9] = [
    Spec {
        field: Field::Names,
        label: "Customer name",
        hint: Hint::Text("Contact person"),
        input: Input::Text {
            placeholder: "Cameron Williams",
        },
    },
    Spec {
        field: Field::Company,
        label: "Company",
        hint: Hint::Text("Optional"),
        input: Input::Text {
            placeholder: "Harvey LLC",
        },
    },
    Spec {
        field: Field::Age,
        label: "Age",
        hint: Hint::WithRange("Years"),
        input: Input::Number {
            min: AGE_RANGE.0,
            max: AGE_RANGE.1,
            step: "1",
        },
    },
    Spec {
        field: Field::TotalPurchase,
        label: "Total purchase",
        hint: Hint::Text("USD spent so far"),
        input: Input::Number {
            min: 0.0,
            max: TOTAL_PURCHASE_MAX,
            step: "0.01",
        },
    },
    Spec {
        field: Field::AccountManager,
        label: "Account manager",
        hint: Hint::Text("Assigned to the account?"),
        input: Input::YesNo,
    },
    Spec {
        field: Field::Years,
        label: "Years as customer",
        hint: Hint::Text("Decimals allowed"),
        input: Input::Number {
            min: 0.0,
            max: YEARS_MAX,
            step: "0.01",
        },
    },
    Spec {
        field: Field::NumSites,
        label: "Number of sites",
        hint: Hint::Text("Websites using the service"),
        input: Input::Number {
            min: 0.0,
            max: NUM_SITES_MAX as f64,
            step: "1",
        },
    },
    Spec {
        field: Field::OnboardDate,
        label: "Onboard date",
        hint: Hint::Text("When the account started"),
        input: Input::DateTime,
    },
    Spec {
        field: Field::Location,
        label: "Location",
        hint: Hint::Text("Postal address, optional"),
        input: Input::Text {
            placeholder: "10265 Elizabeth Mission Barkerburgh, AK 89518",
        },
    },
];

/// One field's state: what is typed, whether the user has been there, what the server said.
#[derive(Clone, Copy)]
pub struct FieldState {
    pub field: Field,
    pub value: RwSignal<String>,
    touched: RwSignal<bool>,
    pub server_error: RwSignal<Option<String>>,
}

impl FieldState {
    /// The browser-side verdict, by the shared rules.
    fn local_error(&self) -> Option<String> {
        let value = self.value.get();
        validate_field(self.field, Some(&Scalar::Text(value))).err()
    }

    fn shown_error(&self) -> Option<String> {
        self.server_error.get().or_else(|| {
            if self.touched.get() {
                self.local_error()
            } else {
                None
            }
        })
    }
}

/// The form's state, shared with the result and what-if panels.
#[derive(Clone, Copy)]
pub struct FormState {
    pub fields: StoredValue<Vec<FieldState>>,
}

impl FormState {
    pub fn new() -> Self {
        let fields = SPECS
            .iter()
            .map(|spec| FieldState {
                field: spec.field,
                value: RwSignal::new(if spec.field == Field::AccountManager {
                    "0".into()
                } else {
                    String::new()
                }),
                touched: RwSignal::new(false),
                server_error: RwSignal::new(None),
            })
            .collect();
        FormState {
            fields: StoredValue::new(fields),
        }
    }

    pub fn record(&self) -> RawCustomer {
        self.fields.with_value(|fields| {
            let cells: Vec<(Field, String)> =
                fields.iter().map(|f| (f.field, f.value.get())).collect();
            RawCustomer::from_text_cells(cells.iter().map(|(f, v)| (*f, v.as_str())))
        })
    }

    /// Fields the browser rejects right now, by the shared rules.
    pub fn invalid_fields(&self) -> Vec<Field> {
        self.fields.with_value(|fields| {
            fields
                .iter()
                .filter(|f| f.local_error().is_some())
                .map(|f| f.field)
                .collect()
        })
    }

    pub fn touch_all(&self) {
        self.fields
            .with_value(|fields| fields.iter().for_each(|f| f.touched.set(true)));
    }

    pub fn fill(&self, raw: &RawCustomer) {
        self.fields.with_value(|fields| {
            for f in fields {
                let text = match raw.get(f.field) {
                    Some(Scalar::Text(t)) => t.clone(),
                    Some(Scalar::Number(n)) => n.to_string(),
                    Some(Scalar::Bool(b)) => u8::from(*b).to_string(),
                    None => String::new(),
                };
                // The datetime-local input wants "YYYY-MM-DDTHH:MM:SS".
                let text = if f.field == Field::OnboardDate {
                    text.replacen(' ', "T", 1)
                } else {
                    text
                };
                f.value.set(text);
                f.server_error.set(None);
                f.touched.set(true);
            }
        });
    }

    pub fn set_server_errors(&self, errors: &[model::FieldError]) {
        self.fields.with_value(|fields| {
            for f in fields {
                f.server_error.set(
                    errors
                        .iter()
                        .find(|e| e.field == f.field)
                        .map(|e| e.message.clone()),
                );
            }
        });
    }

    pub fn clear_server_errors(&self) {
        self.set_server_errors(&[]);
    }
}

/// The label a field has on the form (the what-if sliders use it too).
pub fn label_of(field: Field) -> &'static str {
    SPECS
        .iter()
        .find(|s| s.field == field)
        .map_or(field.column(), |s| s.label)
}

fn field_id(field: Field) -> String {
    format!("field-{}", field.column().to_ascii_lowercase())
}

#[component]
fn FieldInput(spec: &'static Spec, state: FieldState) -> impl IntoView {
    let id = field_id(spec.field);
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let on_input = move |ev: leptos::ev::Event| {
        state.value.set(event_target_value(&ev));
        state.server_error.set(None);
        state.touched.set(true);
    };
    let on_blur = move |_| state.touched.set(true);
    let invalid = move || state.shown_error().is_some();
    let described = format!("{hint_id} {error_id}");
    let control = match spec.input {
        Input::Text { placeholder } => view! {
            <input id=id.clone() type="text" placeholder=placeholder autocomplete="off"
                prop:value=move || state.value.get() on:input=on_input on:blur=on_blur
                aria-invalid=move || invalid().to_string() aria-describedby=described.clone()/>
        }.into_any(),
        Input::Number { min, max, step } => view! {
            <input id=id.clone() type="number" inputmode="decimal" min=min max=max step=step
                prop:value=move || state.value.get() on:input=on_input on:blur=on_blur
                aria-invalid=move || invalid().to_string() aria-describedby=described.clone()/>
        }.into_any(),
        Input::YesNo => view! {
            <select id=id.clone() prop:value=move || state.value.get() on:change=on_input on:blur=on_blur
                aria-describedby=described.clone()>
                <option value="0">"No"</option>
                <option value="1">"Yes"</option>
            </select>
        }.into_any(),
        Input::DateTime => view! {
            <input id=id.clone() type="datetime-local" step="1"
                prop:value=move || state.value.get() on:input=on_input on:blur=on_blur
                aria-invalid=move || invalid().to_string() aria-describedby=described.clone()/>
        }.into_any(),
    };
    view! {
        <div class="field" class:invalid=invalid data-field=spec.field.column()>
            <label for=id.clone()>{spec.label}</label>
            {control}
            <small id=hint_id class="hint">{spec.hint()}</small>
            <small id=error_id class="field-error" role="alert">{move || state.shown_error()}</small>
        </div>
    }
}

/// The form. `on_submit` receives a record the shared rules accept.
#[component]
pub fn ChurnForm(
    state: FormState,
    #[prop(into)] pending: Signal<bool>,
    on_submit: Callback<RawCustomer>,
) -> impl IntoView {
    let fill_with_sample = move || {
        leptos::task::spawn_local(async move {
            if let Ok(raw) = crate::api::sample_customer().await {
                state.fill(&raw);
            }
        })
    };
    let invalid = Memo::new(move |_| state.invalid_fields());
    let blocked_reason = move || {
        let bad = invalid.get();
        if pending.get() {
            Some("Waiting for the prediction…".to_owned())
        } else if bad.is_empty() {
            None
        } else {
            let names: Vec<&str> = bad.iter().map(|f| f.column()).collect();
            Some(format!(
                "Fix {} before scoring: {}",
                if bad.len() == 1 {
                    "this field"
                } else {
                    "these fields"
                },
                names.join(", ")
            ))
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        state.touch_all();
        if state.invalid_fields().is_empty() && !pending.get_untracked() {
            on_submit.run(state.record());
        }
    };
    let fields = state.fields.get_value();
    view! {
        <form class="churn-form" on:submit=submit novalidate>
            <div class="form-grid">
                {SPECS.iter().zip(fields).map(|(spec, field)| view! { <FieldInput spec=spec state=field/> }).collect_view()}
            </div>
            <div class="form-actions">
                <button type="submit" id="submit" disabled=move || blocked_reason().is_some()
                    aria-describedby="submit-why">
                    {move || if pending.get() { "Scoring…" } else { "Predict churn" }}
                </button>
                <button type="button" id="sample" class="secondary" on:click=move |_| fill_with_sample()>
                    "Fill with a sample customer"
                </button>
            </div>
            <p id="submit-why" class="why" aria-live="polite">{blocked_reason}</p>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_fields_offer_what_validation_accepts() {
        let age = SPECS.iter().find(|spec| spec.field == Field::Age).unwrap();
        assert_eq!(age.hint(), "Years, 16–110");
        for spec in &SPECS {
            if let Input::Number { min, max, .. } = spec.input {
                let check = |value: f64| validate_field(spec.field, Some(&Scalar::Number(value)));
                assert!(check(min).is_ok() && check(max).is_ok(), "{}", spec.field);
                assert!(
                    check(min - 1.0).is_err() && check(max + 1.0).is_err(),
                    "{}",
                    spec.field
                );
            }
        }
    }
}
