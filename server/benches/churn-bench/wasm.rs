//! The size of the release WASM bundle the browser downloads.

use crate::line;

/// True when the module still has its function-names section: a dev build, not what users get.
fn has_names_section(wasm: &[u8]) -> bool {
    fn leb128(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
        }
    }
    let mut at = 8; // magic and version
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let Some(size) = leb128(wasm, &mut at) else {
            return false;
        };
        let body = at;
        if id == 0 {
            let mut name_at = body;
            if let Some(len) = leb128(wasm, &mut name_at) {
                if wasm.get(name_at..name_at + len) == Some(b"name".as_slice()) {
                    return true;
                }
            }
        }
        at = body + size;
    }
    false
}

pub fn wasm_size() {
    let site = std::env::var("CHURN_SITE_ROOT").unwrap_or_else(|_| {
        format!(
            "{}/.cache/customer-churn/target/site",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = format!("{site}/pkg/churn_bg.wasm");
    let Ok(wasm) = std::fs::read(&path) else {
        println!("| WASM bundle: not built ({path}): run scripts/build.sh release");
        return;
    };
    if has_names_section(&wasm) {
        println!("| WASM bundle: {path} is a dev build; run scripts/build.sh release first");
        return;
    }
    let gz = std::process::Command::new("sh")
        .args(["-c", &format!("gzip -9c '{path}' | wc -c")])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    line(
        "WASM bundle (release), raw / gzipped",
        wasm.len() / 1024,
        &format!("{} gzipped (goal < 250)", gz / 1024),
        "KiB",
    );
}
