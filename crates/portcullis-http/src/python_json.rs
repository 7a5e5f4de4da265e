//! Parse errors worded like Python's `json` module, because DRF puts that
//! text in the 400 body (`"JSON parse error - Expecting value: line 1
//! column 1 (char 0)"`) and clients show it.
//!
//! Parsing itself is `serde_json`'s; only the message is translated. The
//! position rules are CPython 3.11's: `line` and `column` are 1-based and
//! count characters, `char` is the 0-based character offset; at end of
//! input Python points one past the last character.

/// The `detail` text DRF would send for this unparsable JSON body.
#[must_use]
pub(crate) fn parse_error_detail(body: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return Some(format!("JSON parse error - {}", utf8_message(body, &e))),
    };
    let error = serde_json::from_str::<serde_json::Value>(text).err()?;
    Some(format!("JSON parse error - {}", message(text, &error)))
}

/// CPython's `UnicodeDecodeError` text for the utf-8 codec.
fn utf8_message(body: &[u8], e: &std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let byte = body.get(at).copied().unwrap_or_default();
    let reason = match e.error_len() {
        None => "unexpected end of data",
        Some(_) if (0x80..0xc2).contains(&byte) || byte >= 0xf5 => "invalid start byte",
        Some(_) => "invalid continuation byte",
    };
    format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {at}: {reason}")
}

fn message(text: &str, error: &serde_json::Error) -> String {
    if text.starts_with('\u{feff}') {
        return "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"
            .to_owned();
    }
    let description = error.to_string();
    let what = description.split(" at line ").next().unwrap_or_default();
    let at = byte_offset(text, error.line(), error.column());
    let (msg, offset) = match what {
        "EOF while parsing a value" => ("Expecting value", value_start(text, text.len())),
        "EOF while parsing a list" => match text.trim_end().chars().last() {
            Some('[' | ',') => ("Expecting value", text.len()),
            _ => ("Expecting ',' delimiter", text.len()),
        },
        "EOF while parsing an object" => (object_expectation(text), text.len()),
        "EOF while parsing a string" => (
            "Unterminated string starting at",
            last_quote(text).unwrap_or(0),
        ),
        "expected `:`" => ("Expecting ':' delimiter", at),
        "expected `,` or `]`" | "expected `,` or `}`" => ("Expecting ',' delimiter", at),
        "key must be a string" => ("Expecting property name enclosed in double quotes", at),
        "trailing comma" => match text.get(at..).and_then(|rest| rest.chars().next()) {
            Some(']') => ("Expecting value", at),
            _ => ("Expecting property name enclosed in double quotes", at),
        },
        "trailing characters" => ("Extra data", at),
        // Python raises RecursionError here, which DRF lets become a 500;
        // serde_json stops at 128 levels and this says so.
        "recursion limit exceeded" => ("Nesting deeper than 128 levels", at),
        "invalid escape" => ("Invalid \\escape", at.saturating_sub(1)),
        what if what.starts_with("control character") => ("Invalid control character at", at),
        _ => {
            // "expected value", "expected ident", "invalid number": Python
            // points at the start of the bad value.
            let start = value_start(text, at);
            let rest = text.get(start..).unwrap_or_default();
            for constant in ["NaN", "Infinity", "-Infinity"] {
                if rest.starts_with(constant) {
                    return format!(
                        "Out of range float values are not JSON compliant: '{constant}'"
                    );
                }
            }
            ("Expecting value", start)
        }
    };
    position(msg, text, offset)
}

/// Inside an unfinished object, what Python expected next.
fn object_expectation(text: &str) -> &'static str {
    let trimmed = text.trim_end();
    match trimmed.chars().last() {
        Some('{' | ',') => "Expecting property name enclosed in double quotes",
        Some(':') => "Expecting value",
        Some('"') => {
            // A string just ended: a key if `{` or `,` came before it.
            let open = trimmed
                .len()
                .checked_sub(1)
                .and_then(|end| last_quote(trimmed.get(..end)?));
            let before = open.and_then(|o| trimmed.get(..o)).map(str::trim_end);
            match before.and_then(|b| b.chars().last()) {
                Some('{' | ',') => "Expecting ':' delimiter",
                _ => "Expecting ',' delimiter",
            }
        }
        _ => "Expecting ',' delimiter",
    }
}

/// The byte offset of the last `"` not escaped by a backslash.
fn last_quote(text: &str) -> Option<usize> {
    text.char_indices()
        .rev()
        .find(|&(i, c)| c == '"' && !text.get(..i).is_some_and(|b| b.ends_with('\\')))
        .map(|(i, _)| i)
}

/// Back up over the letters, digits and signs of a bad literal.
fn value_start(text: &str, at: usize) -> usize {
    let head = text.get(..at).unwrap_or(text);
    head.char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
        .last()
        .map_or(at, |(i, _)| i)
}

/// `serde_json`'s 1-based line and byte column as a byte offset.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// `msg: line L column C (char P)` as `json.JSONDecodeError` formats it.
fn position(msg: &str, text: &str, byte_offset: usize) -> String {
    let head = text.get(..byte_offset).unwrap_or(text);
    let pos = head.chars().count();
    let line = head.matches('\n').count() + 1;
    let column = head
        .rsplit_once('\n')
        .map_or(pos + 1, |(_, tail)| tail.chars().count() + 1);
    format!("{msg}: line {line} column {column} (char {pos})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair is what CPython 3.11's `json.loads` said (with DRF's
    /// `parse_constant` for NaN and the infinities).
    #[test]
    fn matches_cpython() {
        let cases: &[(&str, &str)] = &[
            (
                "{",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                "{'a':1}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            ("{\"a\":}", "Expecting value: line 1 column 6 (char 5)"),
            (
                "{\"username\":\"alice\",}",
                "Expecting property name enclosed in double quotes: line 1 column 21 (char 20)",
            ),
            ("{\"a\":1}x", "Extra data: line 1 column 8 (char 7)"),
            ("{\"a\":1}}", "Extra data: line 1 column 8 (char 7)"),
            (
                "{\"a\":NaN}",
                "Out of range float values are not JSON compliant: 'NaN'",
            ),
            (
                "[-Infinity]",
                "Out of range float values are not JSON compliant: '-Infinity'",
            ),
            (
                "username=alice",
                "Expecting value: line 1 column 1 (char 0)",
            ),
            (
                "{\"a\":1",
                "Expecting ',' delimiter: line 1 column 7 (char 6)",
            ),
            (
                "{\"a\"",
                "Expecting ':' delimiter: line 1 column 5 (char 4)",
            ),
            ("{\"a\":", "Expecting value: line 1 column 6 (char 5)"),
            ("[1,2", "Expecting ',' delimiter: line 1 column 5 (char 4)"),
            (
                "\"abc",
                "Unterminated string starting at: line 1 column 1 (char 0)",
            ),
            (
                "{\"a\":\"b\\q\"}",
                "Invalid \\escape: line 1 column 8 (char 7)",
            ),
            (
                "{\"a\":\"b\u{1}\"}",
                "Invalid control character at: line 1 column 8 (char 7)",
            ),
            ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
            (
                "{\"a\" 1}",
                "Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
            (
                "{\"a\":1 \"b\":2}",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
            ("nul", "Expecting value: line 1 column 1 (char 0)"),
            (
                "\n\n {",
                "Expecting property name enclosed in double quotes: line 3 column 3 (char 4)",
            ),
            (
                "{\"é\":1 x",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            ("{\"a\":tru}", "Expecting value: line 1 column 6 (char 5)"),
        ];
        for (input, python) in cases {
            assert_eq!(
                parse_error_detail(input.as_bytes()).as_deref(),
                Some(format!("JSON parse error - {python}").as_str()),
                "input {input:?}"
            );
        }
        assert_eq!(parse_error_detail(b"{\"a\":1}"), None);
    }

    #[test]
    fn invalid_utf8_reads_like_python() {
        assert_eq!(
            parse_error_detail(b"{\"a\":\"\xff\"}").as_deref(),
            Some(
                "JSON parse error - 'utf-8' codec can't decode byte 0xff in position 6: invalid start byte"
            )
        );
        assert_eq!(
            parse_error_detail(b"{\"a\":\"\xc3").as_deref(),
            Some(
                "JSON parse error - 'utf-8' codec can't decode byte 0xc3 in position 6: unexpected end of data"
            )
        );
    }
}
