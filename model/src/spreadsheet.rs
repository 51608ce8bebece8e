//! CSV cells that open as text in a spreadsheet: the one guard against formula ("CSV")
//! injection, used by every CSV the project writes. A customer named `=HYPERLINK("http://x","y")`
//! must not become a link, nor `@SUM(...)` or `-cmd|' /C calc'!A0` something that runs.
//!
//! As OWASP advises, a cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a
//! leading `'`, which spreadsheets take as "this is text" (and hide).
//!
//! Every cell is guarded, whatever its column, numbers included. A rule that let "numbers"
//! through would have to be exactly as strict as every spreadsheet's number parser, and a text
//! field such as a name or a record id can look like one (`-5`); none of our numeric columns
//! (probabilities, thresholds, validated amounts, counts) is ever negative, so the only cost is
//! that a negative number, should one appear, reads as text.

use std::borrow::Cow;

/// What a spreadsheet takes as the start of a formula (OWASP's list).
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A byte-order mark: readers drop it at the start of a file, uncovering what follows it.
const BYTE_ORDER_MARK: char = '\u{feff}';

/// The cell as a spreadsheet will show it, never as a formula.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) || cell.starts_with(BYTE_ORDER_MARK) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Writes one record, every cell through [`safe_cell`]: the way the project writes CSV rows.
#[cfg(feature = "train")]
pub fn write_record<W: std::io::Write>(
    writer: &mut csv::Writer<W>,
    cells: impl IntoIterator<Item = impl AsRef<str>>,
) -> csv::Result<()> {
    for cell in cells {
        writer.write_field(safe_cell(cell.as_ref()).as_bytes())?;
    }
    // An empty record after the fields ends the record.
    writer.write_record(None::<&[u8]>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formulas_become_text_and_everything_else_is_untouched() {
        for (cell, safe) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-0.5", "'-0.5"),
            ("'=already", "'=already"),
            ("Harvey LLC", "Harvey LLC"),
            ("a=b", "a=b"),
            (" =1", " =1"),
            ("0.500000", "0.500000"),
            ("", ""),
            ("ｓ＝全角", "ｓ＝全角"),
            ("\u{feff}=1+1", "'\u{feff}=1+1"),
        ] {
            assert_eq!(safe_cell(cell), safe, "{cell:?}");
        }
        assert!(matches!(safe_cell("plain"), Cow::Borrowed(_)));
    }

    #[cfg(feature = "train")]
    #[test]
    fn records_are_written_guarded_and_quoted() {
        let mut flexible = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        write_record(&mut flexible, ["=1+1", "a, \"b\"", "3"]).unwrap();
        write_record(&mut flexible, ["@x"]).unwrap();
        let text = String::from_utf8(flexible.into_inner().unwrap()).unwrap();
        assert_eq!(text, "'=1+1,\"a, \"\"b\"\"\",3\n'@x\n");
    }

    #[cfg(feature = "train")]
    proptest! {
        /// Whatever the text, the cell read back never starts a formula and is the text itself,
        /// with at most one leading `'`.
        #[test]
        fn no_written_cell_starts_a_formula(cells in proptest::collection::vec(".{0,12}", 1..6)) {
            let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            write_record(&mut writer, &cells).unwrap();
            let bytes = writer.into_inner().unwrap();
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&bytes[..]);
            let record = reader.records().next().unwrap().unwrap();
            prop_assert_eq!(record.len(), cells.len());
            for (read, written) in record.iter().zip(&cells) {
                prop_assert!(!read.starts_with(FORMULA_STARTS), "{:?}", read);
                prop_assert!(read == written || read.strip_prefix('\'') == Some(written.as_str()));
            }
        }
    }

    #[test]
    fn every_first_character_is_checked() {
        // Exhaustive over the first character (all of Unicode's scalar values).
        for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
            let cell = format!("{c}x");
            let safe = safe_cell(&cell);
            assert!(!safe.starts_with(FORMULA_STARTS), "{c:?}");
            let guarded = FORMULA_STARTS.contains(&c) || c == BYTE_ORDER_MARK;
            assert_eq!(safe.len() != cell.len(), guarded, "{c:?}");
        }
    }
}
