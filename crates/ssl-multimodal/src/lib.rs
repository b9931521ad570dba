//! # ssl-multimodal
//!
//! Image-text pretraining: CLIP (and SigLIP's loss) over image-caption pairs, with zero-shot
//! classification and retrieval.
//!
//! | module | what |
//! |---|---|
//! | [`pairs`] | paired data from CSV/TSV/JSONL manifests, bad pairs named or skipped and counted |
//! | [`scenes`] | the embedded default set: captioned shapes, held-out colour-shape combinations |
//! | [`batch`] | caption tokenisation (end-of-text, fixed context), image transforms, batches |
//! | [`loss`] | CLIP's symmetric cross-entropy, SigLIP's sigmoid loss |
//! | [`clip`] | the model: image tower (ssl-vision ViT or ResNet), causal text tower, feature-cached accumulation |
//! | [`eval`] | zero-shot classification with prompt ensembles, Recall@K and median rank |
//!
//! The image towers come from `ssl-vision`, the transformer from `ssl-core`, the tokenizers from
//! `ssl-text`.

pub mod batch;
pub mod clip;
pub mod eval;
pub mod loss;
pub mod pairs;
pub mod scenes;

pub use ssl_core;
