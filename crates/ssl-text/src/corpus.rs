//! Reading users' text: corpora for BERT/GPT pretraining and labelled text for classification.
//!
//! A corpus is a file or a folder. In a folder, every `.txt`, `.text` and `.jsonl` file is read
//! (recursively, hidden entries skipped, in path order), see [`text_files`]. Each file is read
//! by its extension:
//!
//! - `.jsonl`: one JSON object per line with a string field `text`; each object is a document
//!   (blank lines and objects whose `text` is blank are skipped).
//! - anything else: plain text, documents separated by one or more blank lines.
//!
//! Files must be UTF-8 unless [`Utf8Policy::Lossy`] is asked for; a leading byte-order mark is
//! dropped. Every error names the file, and the line (`file:line`) when it is about one line.
//!
//! Labelled text for classification is JSONL with a `label` field, see [`read_labelled_jsonl`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Map, Value};
use ssl_core::{Error, Result};

/// The file extensions [`text_files`] looks for in a folder (compared case-insensitively).
const TEXT_EXTENSIONS: [&str; 3] = ["txt", "text", "jsonl"];

/// How many class names an "unknown label" error lists before it stops.
const MAX_LISTED_CLASSES: usize = 20;

/// What to do with bytes that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Utf8Policy {
    /// Invalid UTF-8 is an error naming the file, the byte offset and the line.
    #[default]
    Strict,
    /// Invalid sequences are replaced by U+FFFD (`�`).
    Lossy,
}

/// The text files of `path`: `path` itself when it is a file (whatever its extension), else
/// every file below the folder whose name ends in `.txt`, `.text` or `.jsonl` (any case),
/// skipping hidden files and folders (names starting with `.`), sorted by path.
///
/// # Errors
///
/// [`Error::Io`] when `path` does not exist or a folder cannot be read; [`Error::Data`] when the
/// folder holds no such file.
///
/// # Examples
///
/// ```
/// use ssl_text::corpus::text_files;
///
/// let dir = std::env::temp_dir().join(format!("ssl_text_corpus_files_{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("sub"))?;
/// std::fs::write(dir.join("b.txt"), "two")?;
/// std::fs::write(dir.join("sub/a.jsonl"), "{\"text\": \"one\"}")?;
/// std::fs::write(dir.join("notes.md"), "ignored")?;
/// let files = text_files(&dir)?;
/// assert_eq!(files, vec![dir.join("b.txt"), dir.join("sub/a.jsonl")]);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn text_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    if files.is_empty() {
        return Err(Error::data(path.display().to_string(), "no .txt, .text or .jsonl files found"));
    }
    files.sort();
    Ok(files)
}

/// Collects the text files below `dir` into `out`, skipping hidden entries.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if has_extension(&path, &TEXT_EXTENSIONS) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether the last component of `path` starts with a dot.
fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Whether `path` ends in one of `extensions` (without the dot, compared case-insensitively).
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether `path` is a JSONL file.
fn is_jsonl(path: &Path) -> bool {
    has_extension(path, &["jsonl"])
}

/// Reads `file` whole and decodes it by `policy`, dropping a leading byte-order mark.
fn read_text(file: &Path, policy: Utf8Policy) -> Result<String> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let mut text =
        decode(bytes, policy).map_err(|message| Error::data(file.display().to_string(), message))?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// Decodes `bytes` as UTF-8 by `policy`; the error is the message for the file.
fn decode(bytes: Vec<u8>, policy: Utf8Policy) -> std::result::Result<String, String> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) if policy == Utf8Policy::Lossy => Ok(String::from_utf8_lossy(err.as_bytes()).into_owned()),
        Err(err) => {
            let offset = err.utf8_error().valid_up_to();
            let line = 1 + err.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
            Err(format!(
                "invalid UTF-8 at byte offset {offset} (line {line}); fix the file or read it lossily \
                 (data.utf8 = \"lossy\" / --lossy-utf8)"
            ))
        }
    }
}

/// The documents of every file of [`text_files`]`(path)`, in file order, each file read by
/// [`read_documents_from_file`]. Files are read in parallel.
///
/// # Errors
///
/// Those of [`text_files`], and the first (in file order) of [`read_documents_from_file`].
///
/// # Examples
///
/// ```
/// use ssl_text::corpus::{read_documents, Utf8Policy};
///
/// let dir = std::env::temp_dir().join(format!("ssl_text_corpus_docs_{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("a.txt"), "First document,\nstill first.\n\nSecond document.\n")?;
/// std::fs::write(dir.join("b.jsonl"), "{\"text\": \"Third.\"}\n{\"text\": \"Fourth.\"}\n")?;
/// let docs = read_documents(&dir, Utf8Policy::Strict)?;
/// assert_eq!(docs, ["First document,\nstill first.", "Second document.", "Third.", "Fourth."]);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_documents(path: &Path, policy: Utf8Policy) -> Result<Vec<String>> {
    let files = text_files(path)?;
    let per_file: Vec<Result<Vec<String>>> =
        files.par_iter().map(|file| read_documents_from_file(file, policy)).collect();
    let mut documents = Vec::new();
    for docs in per_file {
        documents.extend(docs?);
    }
    Ok(documents)
}

/// The documents of one file: one per non-blank `text` of a `.jsonl` file, else the
/// blank-line-separated paragraphs of plain text (lines with trailing whitespace trimmed,
/// joined with `\n`; `\r\n` line ends are accepted).
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::Data`] naming the file for invalid
/// UTF-8 under [`Utf8Policy::Strict`] or a file without any document (`empty: no text`), and
/// naming `file:line` for a JSONL line that is not an object with a string `text` field.
///
/// # Examples
///
/// ```
/// use ssl_text::corpus::{read_documents_from_file, Utf8Policy};
///
/// let file = std::env::temp_dir().join(format!("ssl_text_corpus_file_{}.txt", std::process::id()));
/// std::fs::write(&file, "one\r\n\r\n\r\ntwo  \r\nthree\r\n")?;
/// let docs = read_documents_from_file(&file, Utf8Policy::Strict)?;
/// assert_eq!(docs, ["one", "two\nthree"]);
/// std::fs::remove_file(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_documents_from_file(file: &Path, policy: Utf8Policy) -> Result<Vec<String>> {
    let text = read_text(file, policy)?;
    let documents = if is_jsonl(file) { jsonl_documents(file, &text)? } else { plain_documents(&text) };
    if documents.is_empty() {
        return Err(Error::data(file.display().to_string(), "empty: no text"));
    }
    Ok(documents)
}

/// The blank-line-separated documents of plain text.
fn plain_documents(text: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            flush(&mut current, &mut documents);
        } else {
            current.push(line);
        }
    }
    flush(&mut current, &mut documents);
    documents
}

/// Moves the lines gathered in `current`, if any, into `documents` as one document.
fn flush(current: &mut Vec<&str>, documents: &mut Vec<String>) {
    if !current.is_empty() {
        documents.push(current.join("\n"));
        current.clear();
    }
}

/// The non-blank `text` fields of a JSONL file's lines.
fn jsonl_documents(file: &Path, text: &str) -> Result<Vec<String>> {
    let mut documents = Vec::new();
    for (line_no, line) in jsonl_lines(text) {
        let source = line_source(file, line_no);
        let text = text_field(&source, &mut parse_object(&source, line)?)?;
        if !text.trim().is_empty() {
            documents.push(text);
        }
    }
    Ok(documents)
}

/// The non-blank lines of `text` with their 1-based line numbers.
fn jsonl_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line)).filter(|(_, line)| !line.trim().is_empty())
}

/// The `file:line` name of one line, for errors.
fn line_source(file: &Path, line_no: usize) -> String {
    format!("{}:{line_no}", file.display())
}

/// Parses one JSONL line, which must be a JSON object.
fn parse_object(source: &str, line: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(Error::data(source, format!("expected a JSON object, found {}", kind(&other)))),
        Err(e) => Err(Error::data(source, format!("invalid JSON: {e}"))),
    }
}

/// Takes the string field `text` out of `object`.
fn text_field(source: &str, object: &mut Map<String, Value>) -> Result<String> {
    match object.remove("text") {
        Some(Value::String(text)) => Ok(text),
        Some(other) => {
            Err(Error::data(source, format!("no string `text` field (`text` is {})", kind(&other))))
        }
        None => Err(Error::data(source, "no string `text` field")),
    }
}

/// The JSON type of `value`, in words.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Texts with class labels, for classification (fine-tuning or linear probing).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledText {
    /// The texts, in file and line order.
    pub texts: Vec<String>,
    /// `labels[i]` is the class of `texts[i]`, an index into `classes`.
    pub labels: Vec<i64>,
    /// The class names.
    pub classes: Vec<String>,
}

impl LabelledText {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// One labelled line as read, before labels become class indices.
struct RawExample {
    /// `file:line`, for errors.
    source: String,
    text: String,
    /// The class name: the label string, or the label integer in decimal.
    label: String,
    /// Whether the label was a JSON integer.
    integer: bool,
}

/// Reads labelled text: `path` is a JSONL file, or a folder whose `.jsonl` files (found by
/// [`text_files`]) are read in order. Each non-blank line is an object
/// `{"text": "...", "label": <string or integer>}`; a label's class name is the string, or the
/// integer in decimal. Texts are kept as they are, empty ones included.
///
/// With `classes = None` the classes are the distinct names found, sorted numerically when every
/// label is an integer and lexicographically otherwise. With `Some(classes)` (a test split read
/// with the training split's classes) labels are mapped onto `classes`.
///
/// # Errors
///
/// [`Error::Io`] for files that cannot be read; [`Error::Data`] naming `file:line` for a line that
/// is not an object with a string `text` and a string or integer `label`, or (with `Some`) whose
/// label is not one of `classes`; naming the file for invalid UTF-8 under
/// [`Utf8Policy::Strict`]; naming `path` when there is no example, or (with `None`) fewer than 2
/// classes.
///
/// # Examples
///
/// ```
/// use ssl_text::corpus::{read_labelled_jsonl, Utf8Policy};
///
/// let file = std::env::temp_dir().join(format!("ssl_text_corpus_lab_{}.jsonl", std::process::id()));
/// let lines = r#"{"text": "great", "label": "pos"}
/// {"text": "awful", "label": "neg"}"#;
/// std::fs::write(&file, lines)?;
/// let train = read_labelled_jsonl(&file, Utf8Policy::Strict, None)?;
/// assert_eq!(train.classes, ["neg", "pos"]);
/// assert_eq!(train.labels, [1, 0]);
/// let test = read_labelled_jsonl(&file, Utf8Policy::Strict, Some(&["pos".into(), "neg".into()]))?;
/// assert_eq!(test.labels, [0, 1]);
/// std::fs::remove_file(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_labelled_jsonl(
    path: &Path,
    policy: Utf8Policy,
    classes: Option<&[String]>,
) -> Result<LabelledText> {
    let examples = read_raw_examples(path, policy)?;
    if examples.is_empty() {
        return Err(Error::data(path.display().to_string(), "no labelled examples"));
    }
    let classes = match classes {
        Some(classes) => classes.to_vec(),
        None => found_classes(path, &examples)?,
    };
    let index: HashMap<&str, i64> = classes.iter().zip(0..).map(|(c, i)| (c.as_str(), i)).collect();
    let mut texts = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    for example in examples {
        let Some(&label) = index.get(example.label.as_str()) else {
            return Err(Error::data(
                example.source,
                format!("label `{}` is not one of the training classes {}", example.label, list(&classes)),
            ));
        };
        texts.push(example.text);
        labels.push(label);
    }
    Ok(LabelledText { texts, labels, classes })
}

/// The labelled lines of the JSONL file(s) of `path`, in order; files are read in parallel.
fn read_raw_examples(path: &Path, policy: Utf8Policy) -> Result<Vec<RawExample>> {
    let mut files = text_files(path)?;
    if path.is_dir() {
        files.retain(|f| is_jsonl(f));
        if files.is_empty() {
            return Err(Error::data(path.display().to_string(), "no .jsonl files found"));
        }
    }
    let per_file: Vec<Result<Vec<RawExample>>> =
        files.par_iter().map(|file| read_labelled_file(file, policy)).collect();
    let mut examples = Vec::new();
    for file_examples in per_file {
        examples.extend(file_examples?);
    }
    Ok(examples)
}

/// The labelled lines of one JSONL file.
fn read_labelled_file(file: &Path, policy: Utf8Policy) -> Result<Vec<RawExample>> {
    let text = read_text(file, policy)?;
    let mut examples = Vec::new();
    for (line_no, line) in jsonl_lines(&text) {
        let source = line_source(file, line_no);
        let mut object = parse_object(&source, line)?;
        let text = text_field(&source, &mut object)?;
        let (label, integer) = label_field(&source, &object)?;
        examples.push(RawExample { source, text, label, integer });
    }
    Ok(examples)
}

/// The class name of the `label` field of `object`, and whether it was an integer.
fn label_field(source: &str, object: &Map<String, Value>) -> Result<(String, bool)> {
    match object.get("label") {
        Some(Value::String(label)) if label.trim().is_empty() => Err(Error::data(source, "`label` is empty")),
        Some(Value::String(label)) => Ok((label.clone(), false)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok((n.to_string(), true)),
        Some(other) => Err(Error::data(
            source,
            format!("`label` must be a string or an integer, found {} ({other})", kind(other)),
        )),
        None => Err(Error::data(source, "no `label` field")),
    }
}

/// The sorted distinct class names of `examples`; at least 2 are needed.
fn found_classes(path: &Path, examples: &[RawExample]) -> Result<Vec<String>> {
    let names: BTreeSet<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let mut classes: Vec<String> = names.into_iter().map(str::to_owned).collect();
    if examples.iter().all(|e| e.integer) {
        classes.sort_by_key(|c| c.parse::<i128>().unwrap_or(i128::MAX));
    }
    if classes.len() < 2 {
        return Err(Error::data(
            path.display().to_string(),
            format!("needs at least 2 classes, found {}", classes.len()),
        ));
    }
    Ok(classes)
}

/// `[a, b, c]`, cut after [`MAX_LISTED_CLASSES`] names.
fn list(classes: &[String]) -> String {
    let shown = classes.iter().take(MAX_LISTED_CLASSES).map(String::as_str).collect::<Vec<_>>().join(", ");
    match classes.len().checked_sub(MAX_LISTED_CLASSES) {
        Some(more) if more > 0 => format!("[{shown}, ... and {more} more]"),
        _ => format!("[{shown}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn data_error(err: Error) -> (String, String) {
        match err {
            Error::Data { source_name, message } => (source_name, message),
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn plain_text_splits_on_blank_lines_with_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            write(dir.path(), "a.txt", "\r\n  \r\nline one  \r\n  indented\r\n \t \r\n\r\nsecond\r\nlast\t");
        let docs = read_documents_from_file(&file, Utf8Policy::Strict).unwrap();
        assert_eq!(docs, ["line one\n  indented", "second\nlast"]);
    }

    #[test]
    fn byte_order_mark_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "a.jsonl", "\u{feff}{\"text\": \"x\"}\n");
        assert_eq!(read_documents(&file, Utf8Policy::Strict).unwrap(), ["x"]);
    }

    #[test]
    fn jsonl_documents_skip_blank_lines_and_texts() {
        let dir = tempfile::tempdir().unwrap();
        let contents =
            "{\"text\": \"one\\ntwo\", \"id\": 1}\r\n\n{\"text\": \"  \"}\n{\"text\": \"three\"}\n";
        let file = write(dir.path(), "c.JSONL", contents);
        let docs = read_documents_from_file(&file, Utf8Policy::Strict).unwrap();
        assert_eq!(docs, ["one\ntwo", "three"]);
    }

    #[test]
    fn folders_are_read_recursively_in_order_skipping_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "b.txt", "b");
        write(root, "a/z.TEXT", "az");
        write(root, "a/y.jsonl", "{\"text\": \"ay\"}");
        write(root, "c.Txt", "c");
        write(root, "notes.md", "skipped");
        write(root, ".hidden.txt", "skipped");
        write(root, ".git/d.txt", "skipped");
        let files = text_files(root).unwrap();
        let expected: Vec<PathBuf> =
            ["a/y.jsonl", "a/z.TEXT", "b.txt", "c.Txt"].iter().map(|n| root.join(n)).collect();
        assert_eq!(files, expected);
        assert_eq!(read_documents(root, Utf8Policy::Strict).unwrap(), ["ay", "az", "b", "c"]);
        // A file is taken as is, whatever its extension.
        let md = root.join("notes.md");
        assert_eq!(text_files(&md).unwrap(), vec![md]);
    }

    #[test]
    fn missing_paths_and_folders_without_text_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(text_files(&missing), Err(Error::Io { path, .. }) if path == missing));
        write(dir.path(), "notes.md", "x");
        let (source, message) = data_error(read_documents(dir.path(), Utf8Policy::Strict).unwrap_err());
        assert_eq!(source, dir.path().display().to_string());
        assert_eq!(message, "no .txt, .text or .jsonl files found");
    }

    #[test]
    fn strict_utf8_errors_name_file_offset_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "bad.txt", b"ok\r\nfine\n\nab\xffcd\n");
        let err = read_documents(dir.path(), Utf8Policy::Strict).unwrap_err();
        let (source, message) = data_error(err);
        assert_eq!(source, file.display().to_string());
        assert!(message.starts_with("invalid UTF-8 at byte offset 12 (line 4);"), "{message}");
        assert!(message.contains("data.utf8 = \"lossy\" / --lossy-utf8"), "{message}");
    }

    #[test]
    fn lossy_utf8_replaces_bad_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "bad.txt", b"ab\xffcd\n\ne\xc3");
        let docs = read_documents_from_file(&file, Utf8Policy::Lossy).unwrap();
        assert_eq!(docs, ["ab\u{fffd}cd", "e\u{fffd}"]);
    }

    #[test]
    fn utf8_policy_serialises_in_snake_case() {
        assert_eq!(serde_json::to_string(&Utf8Policy::Lossy).unwrap(), "\"lossy\"");
        assert_eq!(serde_json::from_str::<Utf8Policy>("\"strict\"").unwrap(), Utf8Policy::Strict);
        assert_eq!(Utf8Policy::default(), Utf8Policy::Strict);
    }

    #[test]
    fn empty_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in
            [("empty.txt", ""), ("blank.txt", " \n\r\n"), ("blank.jsonl", "{\"text\": \"\"}\n")]
        {
            let file = write(dir.path(), name, contents);
            let (source, message) =
                data_error(read_documents_from_file(&file, Utf8Policy::Strict).unwrap_err());
            assert_eq!(source, file.display().to_string());
            assert_eq!(message, "empty: no text");
        }
    }

    #[test]
    fn bad_jsonl_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"text\": \"ok\"}\n\n{\"text\": \"ok\"\n", "invalid JSON"),
            ("{\"text\": \"ok\"}\n\n{\"body\": \"ok\"}\n", "no string `text` field"),
            ("{\"text\": \"ok\"}\n\n{\"text\": 5}\n", "no string `text` field (`text` is a number)"),
            ("{\"text\": \"ok\"}\n\n[\"ok\"]\n", "expected a JSON object, found an array"),
        ];
        for (i, (contents, expected)) in cases.iter().enumerate() {
            let file = write(dir.path(), &format!("{i}.jsonl"), contents);
            let (source, message) =
                data_error(read_documents_from_file(&file, Utf8Policy::Strict).unwrap_err());
            assert_eq!(source, format!("{}:3", file.display()));
            assert!(message.starts_with(expected), "{message}");
        }
    }

    fn labelled(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "data.jsonl", lines.join("\n"));
        (dir, file)
    }

    #[test]
    fn string_labels_are_sorted_lexicographically() {
        let (_dir, file) = labelled(&[
            r#"{"text": "a", "label": "pos"}"#,
            r#"{"text": "b", "label": "neg"}"#,
            "",
            r#"{"text": "", "label": "neutral"}"#,
            r#"{"text": "d", "label": "pos"}"#,
        ]);
        let data = read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap();
        assert_eq!(data.classes, ["neg", "neutral", "pos"]);
        assert_eq!(data.texts, ["a", "b", "", "d"]);
        assert_eq!(data.labels, [2, 0, 1, 2]);
        assert_eq!(data.len(), 4);
        assert!(!data.is_empty());
    }

    #[test]
    fn integer_labels_are_sorted_numerically() {
        let (_dir, file) = labelled(&[
            r#"{"text": "a", "label": 10}"#,
            r#"{"text": "b", "label": 2}"#,
            r#"{"text": "c", "label": -1}"#,
            r#"{"text": "d", "label": 2}"#,
        ]);
        let data = read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap();
        assert_eq!(data.classes, ["-1", "2", "10"]);
        assert_eq!(data.labels, [2, 1, 0, 1]);
    }

    #[test]
    fn mixed_labels_are_sorted_lexicographically() {
        let (_dir, file) = labelled(&[
            r#"{"text": "a", "label": 10}"#,
            r#"{"text": "b", "label": "2"}"#,
            r#"{"text": "c", "label": 2}"#,
        ]);
        let data = read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap();
        assert_eq!(data.classes, ["10", "2"]);
        assert_eq!(data.labels, [0, 1, 1]);
    }

    #[test]
    fn labels_map_onto_given_classes() {
        let (_dir, file) = labelled(&[r#"{"text": "a", "label": 1}"#, r#"{"text": "b", "label": "x"}"#]);
        let classes: Vec<String> = ["x", "y", "1"].iter().map(|c| c.to_string()).collect();
        let data = read_labelled_jsonl(&file, Utf8Policy::Strict, Some(&classes)).unwrap();
        assert_eq!(data.classes, classes);
        assert_eq!(data.labels, [2, 0]);
        // One class is enough when the classes are given.
        let (_dir, file) = labelled(&[r#"{"text": "a", "label": "y"}"#]);
        assert_eq!(read_labelled_jsonl(&file, Utf8Policy::Strict, Some(&classes)).unwrap().labels, [1]);
    }

    #[test]
    fn unknown_labels_are_errors_naming_the_line() {
        let (_dir, file) = labelled(&[r#"{"text": "a", "label": "x"}"#, r#"{"text": "b", "label": "z"}"#]);
        let classes: Vec<String> = vec!["x".into(), "y".into()];
        let err = read_labelled_jsonl(&file, Utf8Policy::Strict, Some(&classes)).unwrap_err();
        let (source, message) = data_error(err);
        assert_eq!(source, format!("{}:2", file.display()));
        assert_eq!(message, "label `z` is not one of the training classes [x, y]");
    }

    #[test]
    fn long_class_lists_are_cut() {
        let classes: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let shown = list(&classes);
        assert!(shown.starts_with("[0, 1, "), "{shown}");
        assert!(shown.ends_with("19, ... and 5 more]"), "{shown}");
        assert_eq!(list(&classes[..20]).matches(", ").count(), 19);
    }

    #[test]
    fn a_single_class_is_an_error() {
        let (_dir, file) = labelled(&[r#"{"text": "a", "label": "x"}"#, r#"{"text": "b", "label": "x"}"#]);
        let (source, message) = data_error(read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap_err());
        assert_eq!(source, file.display().to_string());
        assert_eq!(message, "needs at least 2 classes, found 1");
    }

    #[test]
    fn bad_labelled_lines_and_empty_files_are_errors() {
        let cases = [
            (r#"{"text": "b"}"#, "no `label` field"),
            (
                r#"{"text": "b", "label": 1.5}"#,
                "`label` must be a string or an integer, found a number (1.5)",
            ),
            (r#"{"text": "b", "label": " "}"#, "`label` is empty"),
            (r#"{"label": "x"}"#, "no string `text` field"),
        ];
        for (line, expected) in cases {
            let (_dir, file) = labelled(&[r#"{"text": "a", "label": "x"}"#, line]);
            let (source, message) =
                data_error(read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap_err());
            assert_eq!(source, format!("{}:2", file.display()));
            assert_eq!(message, expected);
        }
        let (_dir, file) = labelled(&["", "  "]);
        let (source, message) = data_error(read_labelled_jsonl(&file, Utf8Policy::Strict, None).unwrap_err());
        assert_eq!(source, file.display().to_string());
        assert_eq!(message, "no labelled examples");
    }

    #[test]
    fn labelled_folders_read_only_jsonl_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.jsonl", r#"{"text": "b", "label": "y"}"#);
        write(dir.path(), "a/a.jsonl", r#"{"text": "a", "label": "x"}"#);
        write(dir.path(), "readme.txt", "not JSON");
        let data = read_labelled_jsonl(dir.path(), Utf8Policy::Strict, None).unwrap();
        assert_eq!(data.texts, ["a", "b"]);
        assert_eq!(data.labels, [0, 1]);
        write(dir.path(), "c.jsonl", b"{\"text\": \"c\", \"label\": \"y\"}\n\n\xff");
        let (source, message) =
            data_error(read_labelled_jsonl(dir.path(), Utf8Policy::Strict, None).unwrap_err());
        assert_eq!(source, dir.path().join("c.jsonl").display().to_string());
        assert!(message.starts_with("invalid UTF-8 at byte offset 29 (line 3)"), "{message}");
        let only_text = tempfile::tempdir().unwrap();
        write(only_text.path(), "a.txt", "x");
        let (_, message) =
            data_error(read_labelled_jsonl(only_text.path(), Utf8Policy::Strict, None).unwrap_err());
        assert_eq!(message, "no .jsonl files found");
    }
}
