//! Tokenizers: BERT's WordPiece and GPT-2's byte-level BPE, trained from text with the
//! `tokenizers` crate (no network features), loaded from and saved to `tokenizer.json`, so a
//! tokenizer made here works in the HF ecosystem and the other way round.
//!
//! ```
//! use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
//! let corpus = ["the soup was good .", "the soups were not bad .", "this film ."];
//! let tok = TextTokenizer::train(TokenizerKind::WordPiece, corpus.iter().copied(), 200)?;
//! let ids = tok.encode("the soup was good .")?;
//! assert_eq!(tok.decode(&ids)?, "the soup was good.");
//! assert!(tok.specials().mask.is_some() && tok.vocab_size() <= 200);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use ssl_core::{Error, Result};

mod trainer;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Model, Tokenizer};

/// BERT's special tokens, in the order they take the first ids of a trained vocabulary.
pub const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// GPT-2's end-of-text token, the document separator.
pub const GPT_EOS: &str = "<|endoftext|>";
/// The padding token added to a trained byte-level vocabulary (GPT-2 has none).
pub const GPT_PAD: &str = "<|pad|>";
/// The prefix WordPiece puts on a token that continues a word.
pub const CONTINUATION_PREFIX: &str = "##";

/// Which tokenizer a method uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// BERT's: lower-casing normaliser, whitespace and punctuation pre-tokeniser, WordPiece.
    WordPiece,
    /// GPT-2's: byte-level pre-tokeniser (any text, no unknown token) and BPE.
    ByteLevelBpe,
}

/// The ids of the special tokens a tokenizer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Padding; never attended to, never a target.
    pub pad: u32,
    /// Unknown word (WordPiece).
    pub unk: Option<u32>,
    /// Start of a BERT sequence; its output is the `[CLS]` pooling.
    pub cls: Option<u32>,
    /// Separator between BERT segments and documents.
    pub sep: Option<u32>,
    /// The MLM mask token.
    pub mask: Option<u32>,
    /// GPT's end of text, between documents.
    pub eos: Option<u32>,
}

impl SpecialTokens {
    /// Every special id, for "never mask a special token".
    pub fn all(&self) -> Vec<u32> {
        let mut ids = vec![self.pad];
        ids.extend([self.unk, self.cls, self.sep, self.mask, self.eos].into_iter().flatten());
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// A `tokenizers` tokenizer with the special ids ssl-rs needs.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    kind: TokenizerKind,
    specials: SpecialTokens,
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("tokenizer", format!("{what}: {e}"))
}

impl TextTokenizer {
    /// Trains a tokenizer of `kind` on `texts` with at most `vocab_size` entries (special tokens
    /// included; the vocabulary is smaller when the text has fewer distinct pieces), merging
    /// pairs seen at least twice. Training is deterministic (see the `trainer` module: the
    /// `tokenizers` crate's own trainers are not).
    pub fn train<I, S>(kind: TokenizerKind, texts: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S>,
        S: AsRef<str> + Sync,
    {
        let min = match kind {
            TokenizerKind::WordPiece => BERT_SPECIALS.len() + 1,
            TokenizerKind::ByteLevelBpe => 256 + 2,
        };
        if vocab_size < min {
            return Err(Error::config("data.vocab_size", format!("must be at least {min} for {kind:?}")));
        }
        let mut tokenizer = match kind {
            TokenizerKind::WordPiece => {
                let mut t = Tokenizer::new(WordPiece::default());
                t.with_normalizer(Some(BertNormalizer::default()));
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                t.with_decoder(Some(WordPieceDecoder::default()));
                t
            }
            TokenizerKind::ByteLevelBpe => {
                let mut t = Tokenizer::new(BPE::default());
                t.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                t
            }
        };
        let texts: Vec<S> = texts.collect();
        let model: ModelWrapper = match kind {
            TokenizerKind::WordPiece => {
                let t = trainer::train(
                    &tokenizer,
                    &texts,
                    vocab_size,
                    2,
                    &BERT_SPECIALS,
                    &[],
                    Some(CONTINUATION_PREFIX),
                )?;
                let vocab: ahash::AHashMap<String, u32> =
                    t.vocab.into_iter().enumerate().map(|(i, s)| (s, i as u32)).collect();
                WordPiece::builder()
                    .vocab(vocab)
                    .unk_token("[UNK]".into())
                    .continuing_subword_prefix(CONTINUATION_PREFIX.into())
                    .build()
                    .map_err(|e| tk_err("cannot build the WordPiece model", e))?
                    .into()
            }
            TokenizerKind::ByteLevelBpe => {
                let alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
                let t =
                    trainer::train(&tokenizer, &texts, vocab_size, 2, &[GPT_EOS, GPT_PAD], &alphabet, None)?;
                let vocab: ahash::AHashMap<String, u32> =
                    t.vocab.into_iter().enumerate().map(|(i, s)| (s, i as u32)).collect();
                BPE::builder()
                    .vocab_and_merges(vocab, t.merges)
                    .build()
                    .map_err(|e| tk_err("cannot build the BPE model", e))?
                    .into()
            }
        };
        tokenizer.with_model(model);
        let specials: Vec<AddedToken> = match kind {
            TokenizerKind::WordPiece => BERT_SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect(),
            TokenizerKind::ByteLevelBpe => {
                vec![AddedToken::from(GPT_EOS, true), AddedToken::from(GPT_PAD, true)]
            }
        };
        tokenizer.add_special_tokens(&specials);
        Self::from_tokenizer(tokenizer)
    }

    /// Wraps a `tokenizers` tokenizer, finding its special tokens: `[PAD] [CLS] [SEP] [MASK]`
    /// (and `[UNK]`) for a WordPiece model, `<|endoftext|>` (and `<|pad|>`, else the end-of-text
    /// token pads) for a BPE model.
    pub fn from_tokenizer(inner: Tokenizer) -> Result<Self> {
        let id = |t: &str| inner.token_to_id(t);
        let (kind, specials) = match inner.get_model() {
            ModelWrapper::WordPiece(_) => {
                let need = |t: &str| {
                    id(t).ok_or_else(|| {
                        Error::invalid(
                            "tokenizer",
                            format!("a WordPiece tokenizer for BERT needs a `{t}` token"),
                        )
                    })
                };
                let specials = SpecialTokens {
                    pad: need("[PAD]")?,
                    unk: id("[UNK]"),
                    cls: Some(need("[CLS]")?),
                    sep: Some(need("[SEP]")?),
                    mask: Some(need("[MASK]")?),
                    eos: None,
                };
                (TokenizerKind::WordPiece, specials)
            }
            ModelWrapper::BPE(_) => {
                let eos = id(GPT_EOS).ok_or_else(|| {
                    Error::invalid("tokenizer", format!("a BPE tokenizer for GPT needs a `{GPT_EOS}` token"))
                })?;
                let pad = id(GPT_PAD).unwrap_or(eos);
                (TokenizerKind::ByteLevelBpe, SpecialTokens { pad, eos: Some(eos), ..Default::default() })
            }
            _ => {
                return Err(Error::invalid(
                    "tokenizer",
                    "only WordPiece (BERT) and BPE (GPT) tokenizers are supported",
                ))
            }
        };
        Ok(Self { inner, kind, specials })
    }

    /// Loads a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::data(path.display().to_string(), format!("not a tokenizer.json: {e}")))?;
        Self::from_tokenizer(inner)
    }

    /// Saves as `tokenizer.json` (written to a temporary file, then renamed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| tk_err("cannot serialise", e))
    }

    /// The kind.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The special ids.
    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// The vocabulary size, added tokens included: one more than the largest id.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| tk_err("cannot encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The ids of many texts, in parallel, without special tokens.
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encs = self.inner.encode_batch(inputs, false).map_err(|e| tk_err("cannot encode", e))?;
        Ok(encs.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| tk_err("cannot decode", e))
    }

    /// For every id, whether its token continues a word (`##` prefix in WordPiece), for
    /// whole-word masking; all false for byte-level BPE.
    pub fn continuation_flags(&self) -> Vec<bool> {
        let n = self.vocab_size();
        let mut flags = vec![false; n];
        if self.kind == TokenizerKind::WordPiece {
            for (token, id) in self.inner.get_vocab(true) {
                if let Some(f) = flags.get_mut(id as usize) {
                    *f = token.starts_with(CONTINUATION_PREFIX);
                }
            }
        }
        flags
    }

    /// The token of `id`, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The model's vocabulary size without added tokens (what `tokenizers` trains).
    pub fn model_vocab_size(&self) -> usize {
        self.inner.get_model().get_vocab_size()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::grammar::{documents, GrammarConfig, Split};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn corpus() -> Vec<String> {
        let cfg = GrammarConfig { train_documents: 300, ..GrammarConfig::default() };
        documents(&cfg, Split::Train).into_iter().map(|d| d.text).collect()
    }

    fn trained(kind: TokenizerKind) -> &'static TextTokenizer {
        static WP: OnceLock<TextTokenizer> = OnceLock::new();
        static BPE_: OnceLock<TextTokenizer> = OnceLock::new();
        let cell = if kind == TokenizerKind::WordPiece { &WP } else { &BPE_ };
        cell.get_or_init(|| TextTokenizer::train(kind, corpus().iter(), 400).unwrap())
    }

    #[test]
    fn training_is_deterministic_and_specials_come_first() {
        for kind in [TokenizerKind::WordPiece, TokenizerKind::ByteLevelBpe] {
            let a = TextTokenizer::train(kind, corpus().iter(), 400).unwrap();
            let b = TextTokenizer::train(kind, corpus().iter(), 400).unwrap();
            assert_eq!(a.to_json().unwrap(), b.to_json().unwrap(), "{kind:?}");
            assert!(a.vocab_size() <= 400);
        }
        let wp = trained(TokenizerKind::WordPiece);
        assert_eq!(
            (wp.specials().pad, wp.specials().unk, wp.specials().cls, wp.specials().sep, wp.specials().mask),
            (0, Some(1), Some(2), Some(3), Some(4))
        );
        let bpe = trained(TokenizerKind::ByteLevelBpe);
        assert_eq!((bpe.specials().eos, bpe.specials().pad), (Some(0), 1));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [TokenizerKind::WordPiece, TokenizerKind::ByteLevelBpe] {
            let tok = trained(kind);
            let path = dir.path().join("tokenizer.json");
            tok.save(&path).unwrap();
            let back = TextTokenizer::load(&path).unwrap();
            assert_eq!(back.specials(), tok.specials());
            assert_eq!(back.kind(), kind);
            let text = "the waiter served everything rudely .";
            assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
        }
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let err = TextTokenizer::load(&dir.path().join("bad.json")).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }

    #[test]
    fn whole_word_flags_mark_continuations() {
        let tok = trained(TokenizerKind::WordPiece);
        let flags = tok.continuation_flags();
        let ids = tok.encode("pleasantly").unwrap();
        assert!(ids.len() > 1 && !flags[ids[0] as usize]);
        assert!(ids.iter().skip(1).all(|&i| flags[i as usize]));
    }

    /// The letters of the test corpus: WordPiece knows no other.
    fn letters() -> Vec<char> {
        let mut chars: Vec<char> = corpus().concat().chars().filter(char::is_ascii_lowercase).collect();
        chars.sort_unstable();
        chars.dedup();
        chars
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Byte-level BPE loses nothing: any text decodes back to itself.
        #[test]
        fn byte_level_round_trips_any_text(text in "\\PC{0,40}") {
            let tok = trained(TokenizerKind::ByteLevelBpe);
            let ids = tok.encode(&text).unwrap();
            prop_assert_eq!(tok.decode(&ids).unwrap(), text);
        }

        /// WordPiece round-trips lower-case words of its alphabet (modulo BERT's spacing
        /// around punctuation).
        #[test]
        fn wordpiece_round_trips_words(
            words in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(letters()), 1..12), 1..8)
        ) {
            let tok = trained(TokenizerKind::WordPiece);
            let words: Vec<String> = words.into_iter().map(|w| w.into_iter().collect()).collect();
            let text = words.join(" ");
            let ids = tok.encode(&text).unwrap();
            prop_assert!(!ids.contains(&tok.specials().unk.unwrap()));
            prop_assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }
}
