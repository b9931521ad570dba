//! Packing tokenised documents into fixed-length blocks, with separators.
//!
//! Documents are concatenated into one stream, a separator after each, and the stream is cut
//! into blocks (RoBERTa's "full sentences"; GPT-2's training inputs), so no position is wasted on
//! padding except at the very end:
//!
//! - **BERT** ([`Layout::Bert`]): every block is `[CLS] chunk [SEP]`, the chunk `block_len - 2`
//!   tokens of the stream `doc [SEP] doc [SEP] ...`;
//! - **GPT** ([`Layout::Gpt`]): every block is `block_len` tokens of `doc <eos> doc <eos> ...`.
//!
//! The last block is padded. No token of the stream is lost or repeated (property-tested).
//!
//! ```
//! use ssl_text::pack::{Layout, Packer};
//! let mut blocks = Vec::new();
//! let mut p = Packer::new(Layout::Gpt { eos: 0, pad: 1 }, 4)?;
//! for doc in [vec![5, 6, 7], vec![8]] {
//!     p.push(&doc, |b| blocks.push(b.to_vec()));
//! }
//! p.finish(|b| blocks.push(b.to_vec()));
//! assert_eq!(blocks, [vec![5, 6, 7, 0], vec![8, 0, 1, 1]]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::{Error, Result};

/// How blocks are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[CLS] chunk [SEP]`, documents separated by `[SEP]`.
    Bert {
        /// `[CLS]`.
        cls: u32,
        /// `[SEP]`.
        sep: u32,
        /// `[PAD]`.
        pad: u32,
    },
    /// Plain chunks of `doc <eos> doc <eos> ...`.
    Gpt {
        /// End of text.
        eos: u32,
        /// Padding of the last block.
        pad: u32,
    },
}

impl Layout {
    /// The padding id.
    pub fn pad(&self) -> u32 {
        match *self {
            Layout::Bert { pad, .. } | Layout::Gpt { pad, .. } => pad,
        }
    }

    fn separator(&self) -> u32 {
        match *self {
            Layout::Bert { sep, .. } => sep,
            Layout::Gpt { eos, .. } => eos,
        }
    }

    /// Stream tokens per block.
    fn chunk_len(&self, block_len: usize) -> usize {
        match self {
            Layout::Bert { .. } => block_len - 2,
            Layout::Gpt { .. } => block_len,
        }
    }
}

/// Streams documents into blocks; memory holds at most one block.
#[derive(Debug)]
pub struct Packer {
    layout: Layout,
    block_len: usize,
    chunk: Vec<u32>,
    block: Vec<u32>,
    blocks: u64,
}

impl Packer {
    /// A packer of `block_len`-token blocks (at least 3 for BERT, 2 for GPT).
    pub fn new(layout: Layout, block_len: usize) -> Result<Self> {
        let min = match layout {
            Layout::Bert { .. } => 3,
            Layout::Gpt { .. } => 2,
        };
        if block_len < min {
            return Err(Error::config("data.block_len", format!("must be at least {min}, got {block_len}")));
        }
        Ok(Self {
            layout,
            block_len,
            chunk: Vec::with_capacity(block_len),
            block: Vec::with_capacity(block_len),
            blocks: 0,
        })
    }

    /// Blocks emitted so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Appends a document and its separator to the stream, calling `emit` with every block
    /// that fills up. An empty document adds nothing.
    pub fn push(&mut self, doc: &[u32], mut emit: impl FnMut(&[u32])) {
        if doc.is_empty() {
            return;
        }
        let sep = self.layout.separator();
        for &t in doc.iter().chain(std::iter::once(&sep)) {
            self.chunk.push(t);
            if self.chunk.len() == self.layout.chunk_len(self.block_len) {
                self.flush(&mut emit);
            }
        }
    }

    /// Emits the last, padded block (if the stream has tokens left).
    pub fn finish(mut self, mut emit: impl FnMut(&[u32])) {
        if !self.chunk.is_empty() {
            self.flush(&mut emit);
        }
    }

    fn flush(&mut self, emit: &mut impl FnMut(&[u32])) {
        self.block.clear();
        match self.layout {
            Layout::Bert { cls, sep, .. } => {
                self.block.push(cls);
                self.block.extend_from_slice(&self.chunk);
                self.block.push(sep);
            }
            Layout::Gpt { .. } => self.block.extend_from_slice(&self.chunk),
        }
        self.block.resize(self.block_len, self.layout.pad());
        self.chunk.clear();
        self.blocks += 1;
        emit(&self.block);
    }
}

/// Packs whole documents in memory: `[num_blocks · block_len]` tokens.
pub fn pack(docs: &[Vec<u32>], layout: Layout, block_len: usize) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut p = Packer::new(layout, block_len)?;
    for d in docs {
        p.push(d, |b| out.extend_from_slice(b));
    }
    p.finish(|b| out.extend_from_slice(b));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BERT: Layout = Layout::Bert { cls: 2, sep: 3, pad: 0 };
    const GPT: Layout = Layout::Gpt { eos: 1, pad: 0 };

    /// The stream a layout packs: every non-empty document followed by its separator.
    fn stream(docs: &[Vec<u32>], sep: u32) -> Vec<u32> {
        docs.iter().filter(|d| !d.is_empty()).flat_map(|d| d.iter().copied().chain([sep])).collect()
    }

    proptest! {
        /// Blocks have the right length and framing, and their contents are the stream, in
        /// order, every token once, then padding.
        #[test]
        fn no_token_is_lost_or_repeated(
            docs in proptest::collection::vec(proptest::collection::vec(10u32..100, 0..30), 0..20),
            block_len in 3usize..20,
        ) {
            for layout in [BERT, GPT] {
                let flat = pack(&docs, layout, block_len).unwrap();
                prop_assert_eq!(flat.len() % block_len, 0);
                let mut contents = Vec::new();
                let blocks: Vec<&[u32]> = flat.chunks(block_len).collect();
                for (i, b) in blocks.iter().enumerate() {
                    let inner: &[u32] = match layout {
                        Layout::Bert { .. } => {
                            prop_assert_eq!(b[0], 2);
                            // [CLS] chunk [SEP] then padding: the [SEP] that closes the block is
                            // the last non-pad token.
                            let end = b.iter().rposition(|&t| t != 0).unwrap();
                            prop_assert_eq!(b[end], 3);
                            &b[1..end]
                        }
                        Layout::Gpt { .. } => b,
                    };
                    let last = i + 1 == blocks.len();
                    let real: Vec<u32> = inner.iter().copied().filter(|&t| t != 0).collect();
                    if !last {
                        prop_assert_eq!(real.len(), inner.len(), "padding before the last block");
                    }
                    contents.extend(real);
                }
                let sep = match layout { Layout::Bert { sep, .. } => sep, Layout::Gpt { eos, .. } => eos };
                prop_assert_eq!(contents, stream(&docs, sep));
            }
        }
    }

    #[test]
    fn bert_blocks_are_framed() {
        let flat = pack(&[vec![10, 11, 12], vec![13]], BERT, 5).unwrap();
        assert_eq!(flat, [2, 10, 11, 12, 3, 2, 3, 13, 3, 3]);
        assert!(Packer::new(BERT, 2).is_err());
        assert!(pack(&[], GPT, 4).unwrap().is_empty());
    }
}
