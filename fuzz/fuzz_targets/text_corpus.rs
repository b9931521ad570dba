//! `ssl_text::corpus` readers (plain-text documents and labelled JSONL) on arbitrary bytes,
//! strict and lossy UTF-8: never a panic; lossy reading never fails on encoding; an error
//! names the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssl_text::corpus::{read_documents_from_file, read_labelled_jsonl, Utf8Policy};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = common::file("corpus.txt", data);
    let jsonl = common::file("labelled.jsonl", data);
    for policy in [Utf8Policy::Strict, Utf8Policy::Lossy] {
        match read_documents_from_file(&text, policy) {
            Ok(docs) => assert!(docs.iter().all(|d| !d.trim().is_empty()), "an empty document was kept"),
            Err(e) => common::names(&e.to_string(), &text),
        }
        match read_labelled_jsonl(&jsonl, policy, None) {
            Ok(set) => {
                assert_eq!(set.texts.len(), set.labels.len());
                assert!(set.labels.iter().all(|&l| (l as usize) < set.classes.len()));
            }
            Err(e) => common::names(&e.to_string(), &jsonl),
        }
    }
});
