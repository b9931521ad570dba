//! The error type of every fallible `ssl-core` operation.
//!
//! Each variant names what a user needs to fix: the file, the config field, the tensor and its
//! shapes, or the training step. Binaries wrap these with `anyhow` context; libraries match on them.

use std::path::PathBuf;

/// Errors raised by `ssl-core` and, by convention, by the modality crates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file or folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A libtorch operation failed; `context` says which.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The error libtorch reported.
        #[source]
        source: tch::TchError,
    },
    /// A configuration value is missing, unknown, of the wrong type or out of range.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The field, as a dotted path (`optimizer.lr`), or the config file when the error is
        /// about the file as a whole.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint is missing, corrupt, or does not match the model it is loaded into.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor does not have the shape an operation needs.
    #[error("shape mismatch for {what}: expected {expected}, got {actual:?}")]
    Shape {
        /// The tensor (a parameter name, an input).
        what: String,
        /// The expected shape, in words or as a list.
        expected: String,
        /// The shape found.
        actual: Vec<i64>,
    },
    /// A sample or a data source could not be read or is malformed.
    #[error("data error in {source_name}: {message}")]
    Data {
        /// The file, folder or dataset (with the index when it is a single sample).
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The loss became NaN or infinite; training stopped before the optimiser step.
    #[error(
        "non-finite loss ({loss}) at step {step}; training stopped and the last good checkpoint \
         was left untouched (try a lower learning rate, gradient clipping, or fp32)"
    )]
    NonFiniteLoss {
        /// The optimiser step at which it happened (0-based).
        step: u64,
        /// The value seen.
        loss: f64,
    },
    /// A device was asked for that this machine or build cannot provide.
    #[error("device `{requested}`: {message}")]
    Device {
        /// The device as the user wrote it.
        requested: String,
        /// Why it is unavailable.
        message: String,
    },
    /// A collective operation of a data-parallel job failed (another process stopped, timed
    /// out, or disagreed on a shape).
    #[error("distributed training: {message}")]
    Distributed {
        /// What the communication backend reported.
        message: String,
    },
    /// An argument to a library function is out of its domain.
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument {
        /// The argument.
        name: String,
        /// Why it is invalid.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Config`] for `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    /// An [`Error::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }

    /// An [`Error::Data`] for the data source `source_name`.
    pub fn data(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data { source_name: source_name.into(), message: message.into() }
    }

    /// An [`Error::InvalidArgument`] for `name`.
    pub fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument { name: name.into(), message: message.into() }
    }

    /// An [`Error::Shape`] for `what`.
    pub fn shape(what: impl Into<String>, expected: impl Into<String>, actual: &[i64]) -> Self {
        Error::Shape { what: what.into(), expected: expected.into(), actual: actual.to_vec() }
    }
}

/// Adds context to libtorch results: `tensor.f_matmul(&w).torch_context("projection head")?`.
pub trait TorchResultExt<T> {
    /// Wraps a [`tch::TchError`] in [`Error::Torch`] with `context`.
    fn torch_context(self, context: impl Into<String>) -> Result<T>;
}

impl<T> TorchResultExt<T> for std::result::Result<T, tch::TchError> {
    fn torch_context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Torch { context: context.into(), source })
    }
}

/// Adds the path to I/O results: `std::fs::read(&p).with_path(&p)?`.
pub trait IoResultExt<T> {
    /// Wraps a [`std::io::Error`] in [`Error::Io`] naming `path`.
    fn with_path(self, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn with_path(self, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|e| Error::io(path.as_ref(), e))
    }
}
