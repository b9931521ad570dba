//! Building blocks that self-supervised methods share, written once (work in progress).

pub mod init;

