//! Packed token blocks: in memory, or in a memory-mapped token file built once per corpus and
//! reused across runs.
//!
//! A token file is the blocks' ids, little-endian `u16` when the vocabulary fits (else `u32`),
//! with a JSON sidecar (`<name>.json`) recording the block length, the width, the block count
//! and what the file was built from. Files are keyed by a fingerprint of the corpus files
//! (paths, sizes, modification times), the tokenizer, the layout, the block length and the
//! UTF-8 policy, so a changed input builds a new file and an unchanged one is mapped at once.
//! Both files are written to temporaries and renamed, sidecar last: a file with a sidecar is
//! complete, and a mapped file is never rewritten in place.
//!
//! ```
//! use ssl_core::data::Dataset;
//! use ssl_text::tokens::TokenBlocks;
//! let blocks = TokenBlocks::from_vec(vec![1, 2, 3, 4, 5, 6], 3)?;
//! assert_eq!(blocks.len(), 2);
//! assert_eq!(blocks.get(1)?, [4, 5, 6]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssl_core::data::Dataset;
use ssl_core::{Error, Result};

use crate::corpus::{read_documents_from_file, text_files, Utf8Policy};
use crate::pack::{Layout, Packer};
use crate::tokenizer::TextTokenizer;

/// The sidecar of a token file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenFileMeta {
    /// Tokens per block.
    pub block_len: usize,
    /// Bytes per token: 2 or 4.
    pub width: usize,
    /// Blocks in the file.
    pub num_blocks: usize,
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// The fingerprint the file is keyed by.
    pub fingerprint: String,
    /// The corpus files, in order.
    pub sources: Vec<PathBuf>,
    /// Documents read.
    pub documents: u64,
}

enum Store {
    Memory(Vec<u32>),
    Mapped { map: mmap::Map, width: usize },
}

/// Fixed-length token blocks, random access: the [`Dataset`] the text methods train on.
#[derive(Clone)]
pub struct TokenBlocks {
    store: std::sync::Arc<Store>,
    block_len: usize,
    /// The first block of this view.
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for TokenBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.store {
            Store::Memory(_) => "memory",
            Store::Mapped { .. } => "mapped",
        };
        write!(f, "TokenBlocks({} blocks of {}, {kind})", self.len, self.block_len)
    }
}

impl TokenBlocks {
    /// Blocks held in memory: `tokens.len()` must be a multiple of `block_len`.
    pub fn from_vec(tokens: Vec<u32>, block_len: usize) -> Result<Self> {
        if block_len == 0 || !tokens.len().is_multiple_of(block_len) {
            return Err(Error::invalid(
                "tokens",
                format!("{} tokens are not whole blocks of {block_len}", tokens.len()),
            ));
        }
        let len = tokens.len() / block_len;
        Ok(Self { store: std::sync::Arc::new(Store::Memory(tokens)), block_len, offset: 0, len })
    }

    /// Maps the token file `path` (its sidecar is `path` with extension `json`).
    pub fn open(path: &Path) -> Result<Self> {
        let meta = read_meta(&sidecar(path))?;
        let map = mmap::Map::open(path)?;
        let expected = meta.num_blocks * meta.block_len * meta.width;
        if map.bytes().len() != expected || !(meta.width == 2 || meta.width == 4) || meta.block_len == 0 {
            return Err(Error::data(
                path.display().to_string(),
                format!(
                    "token file of {} bytes does not match its sidecar ({} blocks of {} tokens, {} bytes each)",
                    map.bytes().len(),
                    meta.num_blocks,
                    meta.block_len,
                    meta.width
                ),
            ));
        }
        Ok(Self {
            store: std::sync::Arc::new(Store::Mapped { map, width: meta.width }),
            block_len: meta.block_len,
            offset: 0,
            len: meta.num_blocks,
        })
    }

    /// Blocks `start..start + len` of this view, sharing the storage (no copy).
    pub fn slice(&self, start: usize, len: usize) -> Result<Self> {
        if start + len > self.len {
            return Err(Error::invalid("slice", format!("blocks {start}..{} of {}", start + len, self.len)));
        }
        Ok(Self { store: self.store.clone(), block_len: self.block_len, offset: self.offset + start, len })
    }

    /// Splits off the last `n` blocks: `(first len - n, last n)`, for a held-out split.
    pub fn split_tail(&self, n: usize) -> Result<(Self, Self)> {
        let n = n.min(self.len);
        Ok((self.slice(0, self.len - n)?, self.slice(self.len - n, n)?))
    }

    /// Tokens per block.
    pub fn block_len(&self) -> usize {
        self.block_len
    }

    /// Every token of every block, in order (for statistics such as unigram counts).
    pub fn for_each_block(&self, mut f: impl FnMut(&[u32])) {
        let mut buf = Vec::with_capacity(self.block_len);
        for i in 0..self.len {
            self.read_block(i, &mut buf);
            f(&buf);
        }
    }

    fn read_block(&self, index: usize, out: &mut Vec<u32>) {
        out.clear();
        let index = self.offset + index;
        let (start, end) = (index * self.block_len, (index + 1) * self.block_len);
        match &*self.store {
            Store::Memory(v) => out.extend_from_slice(&v[start..end]),
            Store::Mapped { map, width: 2 } => out.extend(
                map.bytes()[2 * start..2 * end]
                    .chunks_exact(2)
                    .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
            ),
            Store::Mapped { map, .. } => out.extend(
                map.bytes()[4 * start..4 * end]
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
        }
    }
}

impl Dataset for TokenBlocks {
    type Item = Vec<u32>;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Vec<u32>> {
        if index >= self.len {
            return Err(Error::invalid("index", format!("block {index} of {}", self.len)));
        }
        let mut out = Vec::with_capacity(self.block_len);
        self.read_block(index, &mut out);
        Ok(out)
    }
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("json")
}

fn read_meta(path: &Path) -> Result<TokenFileMeta> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::data(path.display().to_string(), format!("bad sidecar: {e}")))
}

/// The folder token files go to when the config names none: `$SSL_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ssl-rs/tokens`, else `$HOME/.cache/ssl-rs/tokens`, else `.ssl-cache/tokens`.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("SSL_CACHE_DIR") {
        return d.join("tokens");
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("ssl-rs").join("tokens");
    }
    if let Some(d) = env("HOME") {
        return d.join(".cache").join("ssl-rs").join("tokens");
    }
    PathBuf::from(".ssl-cache").join("tokens")
}

/// What a token file is built from.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    /// A text file or a folder of them (see [`text_files`]).
    pub corpus: &'a Path,
    /// The tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// The block layout.
    pub layout: Layout,
    /// Tokens per block.
    pub block_len: usize,
    /// Invalid UTF-8: an error, or replaced.
    pub utf8: Utf8Policy,
    /// Where token files live.
    pub cache_dir: &'a Path,
}

fn fingerprint(spec: &BuildSpec<'_>, files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"ssl-rs token file v1\n");
    h.update(spec.tokenizer.to_json()?.as_bytes());
    h.update(serde_json::to_vec(&(spec.layout, spec.block_len, spec.utf8)).unwrap_or_default());
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        h.update(format!("{}\0{}\0{modified}\n", abs.display(), meta.len()).as_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The token file of `spec`: mapped from the cache when it was built before, else built
/// (documents read file by file, tokenised in parallel, packed as they stream) and then mapped.
/// Returns the blocks and whether they came from the cache.
pub fn load_or_build(spec: &BuildSpec<'_>) -> Result<(TokenBlocks, TokenFileMeta, bool)> {
    let files = text_files(spec.corpus)?;
    let key = fingerprint(spec, &files)?;
    let path = spec.cache_dir.join(format!("{}.tokens", &key[..32]));
    if let Ok(meta) = read_meta(&sidecar(&path)) {
        if meta.fingerprint == key {
            return Ok((TokenBlocks::open(&path)?, meta, true));
        }
    }
    std::fs::create_dir_all(spec.cache_dir).map_err(|e| Error::io(spec.cache_dir, e))?;
    let width = if spec.tokenizer.vocab_size() <= 1 << 16 { 2 } else { 4 };
    let tmp = path.with_extension(format!("tokens.tmp{}", std::process::id()));
    let result = write_tokens(spec, &files, &tmp, width);
    let (num_blocks, documents) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if num_blocks == 0 {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::data(spec.corpus.display().to_string(), "no tokens: the corpus is empty"));
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let meta = TokenFileMeta {
        block_len: spec.block_len,
        width,
        num_blocks,
        vocab_size: spec.tokenizer.vocab_size(),
        fingerprint: key,
        sources: files,
        documents,
    };
    let side = sidecar(&path);
    let side_tmp = side.with_extension(format!("json.tmp{}", std::process::id()));
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::invalid("sidecar", e.to_string()))?;
    std::fs::write(&side_tmp, json).map_err(|e| Error::io(&side_tmp, e))?;
    std::fs::rename(&side_tmp, &side).map_err(|e| Error::io(&side, e))?;
    Ok((TokenBlocks::open(&path)?, meta, false))
}

/// Writes the packed blocks of `files` to `tmp`; returns (blocks, documents).
fn write_tokens(spec: &BuildSpec<'_>, files: &[PathBuf], tmp: &Path, width: usize) -> Result<(usize, u64)> {
    let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut out = BufWriter::new(file);
    let mut packer = Packer::new(spec.layout, spec.block_len)?;
    let mut io_error = None;
    let mut write_block = |b: &[u32]| {
        if io_error.is_some() {
            return;
        }
        let r = if width == 2 {
            b.iter().try_for_each(|&t| out.write_all(&(t as u16).to_le_bytes()))
        } else {
            b.iter().try_for_each(|&t| out.write_all(&t.to_le_bytes()))
        };
        if let Err(e) = r {
            io_error = Some(e);
        }
    };
    let mut documents = 0u64;
    for f in files {
        let docs = read_documents_from_file(f, spec.utf8)?;
        for chunk in docs.chunks(4096) {
            for ids in spec.tokenizer.encode_batch(chunk)? {
                packer.push(&ids, &mut write_block);
            }
        }
        documents += docs.len() as u64;
    }
    packer.finish(&mut write_block);
    if let Some(e) = io_error {
        return Err(Error::io(tmp, e));
    }
    let file = out.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))?;
    let bytes = std::fs::metadata(tmp).map_err(|e| Error::io(tmp, e))?.len() as usize;
    Ok((bytes / (width * spec.block_len), documents))
}

/// Read-only memory maps: the one place this crate needs `unsafe`.
#[allow(unsafe_code)]
mod mmap {
    use std::path::Path;

    use ssl_core::{Error, Result};

    /// A read-only map of a whole file.
    pub(super) struct Map(Option<memmap2::Mmap>);

    impl Map {
        pub(super) fn open(path: &Path) -> Result<Self> {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
            if len == 0 {
                return Ok(Self(None)); // mapping an empty file fails on some systems
            }
            // SAFETY: token files are written to a temporary name and renamed into place, and
            // never modified afterwards, so the mapped bytes cannot change under us (a file
            // replaced by a rebuild is a new inode; this map keeps the old one).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            Ok(Self(Some(map)))
        }

        pub(super) fn bytes(&self) -> &[u8] {
            self.0.as_deref().unwrap_or(&[])
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;

    #[test]
    fn token_files_are_built_once_and_match_in_memory_packing() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).unwrap();
        std::fs::write(corpus.join("a.txt"), "the soup was good .\n\nthe film was bad .\n").unwrap();
        std::fs::write(corpus.join("b.jsonl"), "{\"text\": \"this hotel .\"}\n").unwrap();
        let texts = ["the soup was good .", "the film was bad .", "this hotel ."];
        let tok = TextTokenizer::train(TokenizerKind::WordPiece, texts.iter(), 100).unwrap();
        let s = tok.specials();
        let layout = Layout::Bert { cls: s.cls.unwrap(), sep: s.sep.unwrap(), pad: s.pad };
        let cache = dir.path().join("cache");
        let spec = BuildSpec {
            corpus: &corpus,
            tokenizer: &tok,
            layout,
            block_len: 6,
            utf8: Utf8Policy::Strict,
            cache_dir: &cache,
        };
        let (blocks, meta, cached) = load_or_build(&spec).unwrap();
        assert!(!cached);
        assert_eq!((meta.width, meta.documents), (2, 3));
        let docs: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t).unwrap()).collect();
        let expected = crate::pack::pack(&docs, layout, 6).unwrap();
        let mut got = Vec::new();
        blocks.for_each_block(|b| got.extend_from_slice(b));
        assert_eq!(got, expected);
        let (again, _, cached) = load_or_build(&spec).unwrap();
        assert!(cached);
        assert_eq!(again.get(0).unwrap(), blocks.get(0).unwrap());
        assert!(again.get(again.len()).is_err());
        let (head, tail) = again.split_tail(1).unwrap();
        assert_eq!((head.len(), tail.len()), (again.len() - 1, 1));
        assert_eq!(tail.get(0).unwrap(), again.get(again.len() - 1).unwrap());
        // A changed corpus builds a new file.
        std::fs::write(corpus.join("b.jsonl"), "{\"text\": \"this phone .\"}\n").unwrap();
        let (_, _, cached) = load_or_build(&BuildSpec { ..spec.clone() }).unwrap();
        assert!(!cached);
        let leftovers: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tokens");
        std::fs::write(&path, [0u8; 10]).unwrap();
        let meta = TokenFileMeta {
            block_len: 4,
            width: 2,
            num_blocks: 2,
            vocab_size: 10,
            fingerprint: String::new(),
            sources: vec![],
            documents: 1,
        };
        std::fs::write(sidecar(&path), serde_json::to_vec(&meta).unwrap()).unwrap();
        let err = TokenBlocks::open(&path).unwrap_err();
        assert!(err.to_string().contains("x.tokens"), "{err}");
        assert!(TokenBlocks::from_vec(vec![1, 2, 3], 2).is_err());
    }
}
