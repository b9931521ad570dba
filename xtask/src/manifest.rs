//! Text edits of the root `Cargo.toml` that keep its formatting and comments.
//!
//! A TOML library would rewrite the whole file; these edits only insert one line (or one inline
//! value) into an array of the `[workspace]` table, following the array's own style: one entry per
//! line with the last entry's indentation, trailing comma or not.

/// The outcome of [`add_to_workspace_array`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The new file text.
    Added(String),
    /// The array already lists the entry; the file needs no change.
    AlreadyPresent,
}

/// Adds `entry` at the end of the array `key` (e.g. `members`) of the `[workspace]` table.
pub fn add_to_workspace_array(text: &str, key: &str, entry: &str) -> Result<Edit, String> {
    let open = find_array(text, key).ok_or_else(|| format!("no `{key} = [` in [workspace]"))?;
    let array = scan_array(text, open)?;
    if array.values.iter().any(|v| v == entry) {
        return Ok(Edit::AlreadyPresent);
    }
    let mut out = text.to_string();
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let close_line = line_start(array.close);
    let bracket_alone = array.multiline && text[close_line..array.close].trim().is_empty();
    if bracket_alone {
        let indent = match array.last_value_end {
            Some(end) => leading_whitespace(&text[line_start(end)..]).to_string(),
            None => format!("{}    ", leading_whitespace(&text[close_line..])),
        };
        // Follow the array's style: trailing comma when it had one (or was empty).
        let trailing = array.last_value_end.is_none() || array.comma_after_last;
        let comma = if trailing { "," } else { "" };
        out.insert_str(close_line, &format!("{indent}\"{entry}\"{comma}\n"));
        if let (Some(end), false) = (array.last_value_end, trailing) {
            out.insert(end, ',');
        }
    } else if let Some(end) = array.last_value_end {
        out.insert_str(end, &format!(", \"{entry}\""));
    } else {
        out.insert_str(array.close, &format!("\"{entry}\""));
    }
    Ok(Edit::Added(out))
}

/// The values of the array `key` of the `[workspace]` table, or `None` if there is none.
pub fn workspace_array(text: &str, key: &str) -> Option<Vec<String>> {
    let open = find_array(text, key)?;
    scan_array(text, open).ok().map(|a| a.values)
}

fn leading_whitespace(line: &str) -> &str {
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The byte offset of the `[` that opens `key = [` in the `[workspace]` table.
fn find_array(text: &str, key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if let Some(header) = table_header(trimmed) {
            table = header;
            continue;
        }
        if table != "workspace" {
            continue;
        }
        let Some(rest) = line.trim_start().strip_prefix(key) else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        if value.starts_with('[') {
            return Some(start + line.len() - value.len());
        }
    }
    None
}

/// `Some("workspace")` for a `[workspace]` line (also `[[bin]]`-style headers), else `None`.
fn table_header(line: &str) -> Option<String> {
    let code = line.split('#').next()?.trim();
    let inner = code.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.trim_start_matches('[').trim_end_matches(']').trim();
    let is_key = |c: char| c.is_ascii_alphanumeric() || "_-.\" ".contains(c);
    (!inner.is_empty() && inner.chars().all(is_key)).then(|| inner.replace(' ', ""))
}

/// What [`scan_array`] learns about one array value.
struct Array {
    /// Offset of the closing `]`.
    close: usize,
    /// The string values, unescaped only as far as Cargo paths need.
    values: Vec<String>,
    /// Offset just past the last value's closing quote.
    last_value_end: Option<usize>,
    /// Whether a comma follows the last value.
    comma_after_last: bool,
    /// Whether the array spans several lines.
    multiline: bool,
}

/// Scans the array opening at `open`, skipping comments and the inside of strings.
fn scan_array(text: &str, open: usize) -> Result<Array, String> {
    let mut array = Array {
        close: 0,
        values: Vec::new(),
        last_value_end: None,
        comma_after_last: false,
        multiline: false,
    };
    let mut depth = 0usize;
    let mut chars = text[open..].char_indices().map(|(i, c)| (open + i, c));
    while let Some((i, c)) = chars.next() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    array.close = i;
                    return Ok(array);
                }
            }
            '\n' => array.multiline = true,
            ',' => array.comma_after_last = array.last_value_end.is_some(),
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        array.multiline = true;
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut value = String::new();
                let mut escaped = false;
                let end = loop {
                    let Some((j, d)) = chars.next() else {
                        return Err("unterminated string".into());
                    };
                    match d {
                        '\\' if c == '"' && !escaped => escaped = true,
                        _ if d == c && !escaped => break j + 1,
                        _ => {
                            value.push(d);
                            escaped = false;
                        }
                    }
                };
                array.values.push(value);
                array.last_value_end = Some(end);
                array.comma_after_last = false;
            }
            _ => {}
        }
    }
    Err("unterminated array".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds `crates/ssl-x` to `key` of `before` and compares with `after` (`None`: already there).
    fn check(key: &str, before: &str, after: Option<&str>) {
        let expected = after.map_or(Edit::AlreadyPresent, |a| Edit::Added(a.to_string()));
        let edit = add_to_workspace_array(before, key, "crates/ssl-x").expect("edit");
        assert_eq!(edit, expected, "adding to {key} of:\n{before}");
    }

    const ROOT: &str = "\
[workspace]
resolver = \"2\"
members = [
    \"crates/ssl-core\",
    \"xtask\",
]
default-members = [
    \"crates/ssl-core\",
]

[workspace.package]
version = \"0.1.0\"
";

    #[test]
    fn one_entry_per_line() {
        let members = ROOT.replace("    \"xtask\",\n", "    \"xtask\",\n    \"crates/ssl-x\",\n");
        check("members", ROOT, Some(&members));
        let default = ROOT.replace(
            "    \"crates/ssl-core\",\n]\n\n",
            "    \"crates/ssl-core\",\n    \"crates/ssl-x\",\n]\n\n",
        );
        check("default-members", ROOT, Some(&default));
    }

    #[test]
    fn styles() {
        let ws = |array: &str| format!("[workspace]\nmembers = {array}\n");
        let check_members = |before: &str, after: &str| check("members", &ws(before), Some(&ws(after)));
        check_members("[\"a\", \"b\"]", "[\"a\", \"b\", \"crates/ssl-x\"]");
        check_members("[\"a\",]", "[\"a\", \"crates/ssl-x\",]");
        check_members("[]", "[\"crates/ssl-x\"]");
        check_members("['a']", "['a', \"crates/ssl-x\"]");
        check_members("[\n]", "[\n    \"crates/ssl-x\",\n]");
        check_members("[\n  \"a\"\n]", "[\n  \"a\",\n  \"crates/ssl-x\"\n]");
        check_members("[\n\t\"a\", # core\n]", "[\n\t\"a\", # core\n\t\"crates/ssl-x\",\n]");
        check_members("[\n    \"a\", # a ] \"b\"\n]", "[\n    \"a\", # a ] \"b\"\n    \"crates/ssl-x\",\n]");
        check_members("[\n    \"a\",\n    \"b\"]", "[\n    \"a\",\n    \"b\", \"crates/ssl-x\"]");
        check_members("[\"a]\"]", "[\"a]\", \"crates/ssl-x\"]");
    }

    #[test]
    fn already_present() {
        check("members", "[workspace]\nmembers = [\"crates/ssl-x\"]\n", None);
        check("members", "[workspace]\nmembers = [\n    'crates/ssl-x',\n]\n", None);
    }

    #[test]
    fn only_the_workspace_table_and_the_exact_key() {
        let text = "\
[package]
members = [\"p\"]

[workspace]
default-members = [\"d\"]
members = [\"m\"] # all of them

[workspace.metadata.x]
members = [\"q\"]
";
        let expected = text.replace("[\"m\"]", "[\"m\", \"crates/ssl-x\"]");
        check("members", text, Some(&expected));
        assert_eq!(workspace_array(text, "members"), Some(vec!["m".to_string()]));
        assert_eq!(workspace_array(text, "default-members"), Some(vec!["d".to_string()]));
        assert_eq!(workspace_array(text, "exclude"), None);
    }

    #[test]
    fn errors() {
        let err = |text: &str| add_to_workspace_array(text, "members", "x").expect_err(text);
        assert!(err("[package]\nname = \"a\"\n").contains("no `members = [`"));
        assert!(err("[workspace]\nmembers = [\"a\",\n").contains("unterminated array"));
        assert!(err("[workspace]\nmembers = [\"a,\n]\n").contains("unterminated string"));
    }
}
