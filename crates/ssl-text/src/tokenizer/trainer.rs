//! A deterministic BPE trainer for both tokenizers.
//!
//! The `tokenizers` crate's trainers break ties between equally frequent pairs by ids that
//! depend on the iteration order of randomly seeded hash maps, so two trainings on the same text
//! can give different vocabularies, and a run could not be reproduced. This trainer is the same
//! algorithm (Sennrich et al., 2016; WordPiece vocabularies as `tokenizers` builds them: BPE with
//! a `##` prefix on word-internal symbols) with every order fixed: words sorted, the alphabet
//! sorted, ties broken by the pair's ids, which follow the alphabet and then the merge order. The
//! text goes through the tokenizer's own normaliser and pre-tokeniser, so what is trained is what
//! is encoded.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use rayon::prelude::*;
use ssl_core::{Error, Result};
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, Tokenizer};

/// What training produces: the vocabulary in id order (specials first) and the merges in order.
pub(crate) struct Trained {
    pub vocab: Vec<String>,
    pub merges: Vec<(String, String)>,
}

/// The words of `texts` after the tokenizer's normaliser and pre-tokeniser, with their counts,
/// sorted by word.
fn word_counts<S: AsRef<str> + Sync>(tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<(String, u64)>> {
    let counts = texts
        .par_iter()
        .try_fold(HashMap::<String, u64>::new, |mut acc, text| {
            let mut pts = PreTokenizedString::from(text.as_ref());
            if let Some(n) = tokenizer.get_normalizer() {
                pts.normalize(|s| tokenizers::Normalizer::normalize(n, s))
                    .map_err(|e| Error::invalid("tokenizer", format!("normaliser failed: {e}")))?;
            }
            if let Some(p) = tokenizer.get_pre_tokenizer() {
                tokenizers::PreTokenizer::pre_tokenize(p, &mut pts)
                    .map_err(|e| Error::invalid("tokenizer", format!("pre-tokeniser failed: {e}")))?;
            }
            for (word, _, _) in pts.get_splits(OffsetReferential::Original, OffsetType::Char) {
                *acc.entry(word.to_string()).or_default() += 1;
            }
            Ok::<_, Error>(acc)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (w, c) in b {
                *a.entry(w).or_default() += c;
            }
            Ok(a)
        })?;
    let mut words: Vec<(String, u64)> = counts.into_iter().collect();
    words.sort_unstable();
    Ok(words)
}

/// Tokens in id order and their ids.
#[derive(Default)]
struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The id of `token`, added at the end when new.
    fn add(&mut self, token: String) -> u32 {
        if let Some(&id) = self.ids.get(&token) {
            return id;
        }
        let id = self.tokens.len() as u32;
        self.ids.insert(token.clone(), id);
        self.tokens.push(token);
        id
    }
}

#[derive(PartialEq, Eq)]
struct Candidate {
    count: u64,
    pair: (u32, u32),
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Most frequent first; among equals the smallest pair of ids.
        self.count.cmp(&other.count).then_with(|| Reverse(self.pair).cmp(&Reverse(other.pair)))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Trains a vocabulary of at most `vocab_size` entries: `specials`, then the alphabet (`alphabet`
/// plus every character seen, sorted; with `prefix` also each character's word-internal form),
/// then merged symbols, merging while a pair occurs at least `min_frequency` times.
pub(crate) fn train<S: AsRef<str> + Sync>(
    tokenizer: &Tokenizer,
    texts: &[S],
    vocab_size: usize,
    min_frequency: u64,
    specials: &[&str],
    alphabet: &[char],
    prefix: Option<&str>,
) -> Result<Trained> {
    let words = word_counts(tokenizer, texts)?;
    if words.is_empty() {
        return Err(Error::data("tokenizer training text", "no words to learn a vocabulary from"));
    }
    let mut v = Vocab::default();
    for s in specials {
        v.add(s.to_string());
    }
    let mut chars: Vec<char> = alphabet.to_vec();
    let seen: HashSet<char> = words.iter().flat_map(|(w, _)| w.chars()).collect();
    chars.extend(seen);
    chars.sort_unstable();
    chars.dedup();
    for &c in &chars {
        v.add(c.to_string());
    }
    if let Some(p) = prefix {
        for &c in &chars {
            v.add(format!("{p}{c}"));
        }
    }
    // Every word as symbol ids.
    let mut symbols: Vec<Vec<u32>> = words
        .iter()
        .map(|(w, _)| {
            w.chars()
                .enumerate()
                .map(|(i, c)| match (i, prefix) {
                    (0, _) | (_, None) => v.ids[&c.to_string()],
                    (_, Some(p)) => v.ids[&format!("{p}{c}")],
                })
                .collect()
        })
        .collect();
    let counts: Vec<u64> = words.iter().map(|(_, c)| *c).collect();

    // Pair counts and where each pair occurs (BTreeMap: deterministic iteration).
    let mut pair_counts: HashMap<(u32, u32), u64> = HashMap::new();
    let mut pair_words: BTreeMap<(u32, u32), HashSet<usize>> = BTreeMap::new();
    for (w, sym) in symbols.iter().enumerate() {
        for p in sym.windows(2) {
            *pair_counts.entry((p[0], p[1])).or_default() += counts[w];
            pair_words.entry((p[0], p[1])).or_default().insert(w);
        }
    }
    let mut heap: BinaryHeap<Candidate> =
        pair_counts.iter().map(|(&pair, &count)| Candidate { count, pair }).collect();
    let mut merges = Vec::new();
    while v.tokens.len() < vocab_size {
        let Some(top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            // Stale entry: its count changed since it was pushed.
            if current > 0 {
                heap.push(Candidate { count: current, pair: top.pair });
            }
            continue;
        }
        if current < min_frequency {
            break;
        }
        let (a, b) = top.pair;
        let (left, right) = (v.tokens[a as usize].clone(), v.tokens[b as usize].clone());
        let right_part = match prefix {
            Some(p) => right.strip_prefix(p).unwrap_or(&right).to_string(),
            None => right.clone(),
        };
        let new_id = v.add(format!("{left}{right_part}"));
        merges.push((left, right));
        let mut touched: Vec<usize> = pair_words.remove(&top.pair).unwrap_or_default().into_iter().collect();
        touched.sort_unstable();
        pair_counts.remove(&top.pair);
        let mut changed: BTreeMap<(u32, u32), ()> = BTreeMap::new();
        for w in touched {
            let old = std::mem::take(&mut symbols[w]);
            let mut merged = Vec::with_capacity(old.len());
            let mut i = 0;
            while i < old.len() {
                if i + 1 < old.len() && old[i] == a && old[i + 1] == b {
                    merged.push(new_id);
                    i += 2;
                } else {
                    merged.push(old[i]);
                    i += 1;
                }
            }
            let c = counts[w];
            for p in old.windows(2) {
                let key = (p[0], p[1]);
                if key == top.pair {
                    continue;
                }
                if let Some(n) = pair_counts.get_mut(&key) {
                    *n -= c;
                }
                changed.insert(key, ());
            }
            for p in merged.windows(2) {
                let key = (p[0], p[1]);
                *pair_counts.entry(key).or_default() += c;
                pair_words.entry(key).or_default().insert(w);
                changed.insert(key, ());
            }
            symbols[w] = merged;
        }
        for key in changed.into_keys() {
            match pair_counts.get(&key).copied() {
                Some(0) | None => {
                    pair_counts.remove(&key);
                }
                Some(count) => heap.push(Candidate { count, pair: key }),
            }
        }
    }
    Ok(Trained { vocab: v.tokens, merges })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    fn whitespace() -> Tokenizer {
        let mut t = Tokenizer::new(BPE::default());
        t.with_pre_tokenizer(Some(Whitespace {}));
        t
    }

    #[test]
    fn merges_the_most_frequent_pair_first_and_breaks_ties_by_id() {
        // "ab" occurs 3 times, "cd" twice, "bc" once.
        let texts = ["ab ab ab", "cd cd", "bc"];
        let t = train(&whitespace(), &texts, 100, 2, &["<s>"], &[], None).unwrap();
        assert_eq!(t.merges, [("a".to_string(), "b".to_string()), ("c".to_string(), "d".to_string())]);
        assert_eq!(t.vocab, ["<s>", "a", "b", "c", "d", "ab", "cd"]);
        // Equal counts: the pair of smaller ids ("a","b") before ("c","d").
        let t = train(&whitespace(), &["cd ab"], 100, 1, &[], &[], None).unwrap();
        assert_eq!(t.merges[0], ("a".to_string(), "b".to_string()));
    }

    #[test]
    fn continuation_prefix_marks_word_internal_symbols() {
        let t = train(&whitespace(), &["abc abc"], 100, 2, &[], &[], Some("##")).unwrap();
        assert_eq!(t.merges[0], ("a".to_string(), "##b".to_string()));
        assert!(t.vocab.contains(&"ab".to_string()) && t.vocab.contains(&"abc".to_string()));
        assert!(t.vocab.contains(&"##c".to_string()));
        let empty: [&str; 0] = [];
        assert!(train(&whitespace(), &empty, 100, 2, &[], &[], None).is_err());
    }
}
