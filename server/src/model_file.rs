//! Reading and writing model files on disk.

use std::path::Path;

use anyhow::{Context, Result};
use model::ChurnModel;

pub fn load(path: &Path) -> Result<ChurnModel> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("no model at {}: train one with `churn train --input customers.csv --output {}`",
                path.display(), path.display())
    })?;
    ChurnModel::from_json(&text).with_context(|| format!("loading {}", path.display()))
}

/// Writes atomically (temp file + rename) so a running scorer never reads half a model.
pub fn save(model: &ChurnModel, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, model.to_json()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
