//! Aligned text tables for the look-inside commands (`churn topics`, `churn groups`).

/// `rows` under `header`, each column as wide as its widest cell, two spaces apart; no trailing
/// spaces. Widths count characters, so a topic name in any script stays aligned as well as a
/// terminal allows.
pub fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    // Group ids, client ids and hosts come from whoever connects: their control characters are
    // shown escaped (`\u{1b}`), never sent to the operator's terminal.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| visible(cell)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0);
            out.extend(std::iter::repeat_n(
                ' ',
                pad.saturating_sub(cell.chars().count()),
            ));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `cell` with control characters escaped.
pub fn visible(cell: &str) -> String {
    cell.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = match c.is_control() {
                true => c.escape_default().collect(),
                false => vec![c],
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_in_cells_are_escaped() {
        let table = super::aligned(&["GROUP"], &[vec!["evil\u{1b}[2Jgroup\r\n".to_owned()]]);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\r'),
            "{table:?}"
        );
        assert!(table.contains("evil\\u{1b}[2Jgroup\\r\\n"), "{table:?}");
    }

    #[test]
    fn columns_line_up_whatever_the_cells() {
        let table = super::aligned(
            &["TOPIC", "N"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long-name-é".into(), "22".into()],
                vec!["".into(), "".into()],
            ],
        );
        assert_eq!(table, "TOPIC        N\na            1\nlong-name-é  22\n\n");
    }
}
