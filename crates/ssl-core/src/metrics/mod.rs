//! Step records and where they go: `metrics.jsonl`, TensorBoard event files ([`tensorboard`]),
//! memory (tests), or anything implementing [`MetricsSink`].

pub mod tensorboard;
pub use tensorboard::TensorBoardSink;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoResultExt, Result};

/// One logged optimiser step. Serialised flat: `{"step":..,"loss":..,"lr":..,"samples_per_sec":..,
/// "<metric>":..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimiser steps completed.
    pub step: u64,
    /// Mean loss over the steps since the previous record.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Training throughput since the previous record.
    pub samples_per_sec: f64,
    /// The objective's metrics of the last step, plus `grad_norm` when clipping.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// A consumer of step records.
pub trait MetricsSink {
    /// Receives one record.
    fn record(&mut self, record: &StepRecord) -> Result<()>;
    /// Called once when training ends (flush).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Appends one JSON object per record to a file (`metrics.jsonl` in a run directory).
pub struct JsonlSink {
    path: PathBuf,
    file: File,
}

impl JsonlSink {
    /// Opens `path` for appending. With `keep_through = Some(step)` (a run resumed from the
    /// checkpoint of `step` completed steps), records of later steps left by the interrupted run
    /// are dropped first, so the file reads as one uninterrupted run; with `None` the file is
    /// truncated.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_path(parent)?;
        }
        let kept: Vec<String> = match keep_through {
            Some(step) if path.exists() => {
                let f = File::open(path).with_path(path)?;
                BufReader::new(f)
                    .lines()
                    .map_while(std::result::Result::ok)
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                            .is_some_and(|s| s <= step)
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut file =
            OpenOptions::new().create(true).write(true).truncate(true).open(path).with_path(path)?;
        for line in kept {
            writeln!(file, "{line}").with_path(path)?;
        }
        Ok(Self { path: path.to_path_buf(), file })
    }
}

impl MetricsSink for JsonlSink {
    fn record(&mut self, record: &StepRecord) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::data(self.path.display().to_string(), e.to_string()))?;
        writeln!(self.file, "{line}").with_path(&self.path)
    }

    fn finish(&mut self) -> Result<()> {
        self.file.sync_all().with_path(&self.path)
    }
}

/// One measurement of an input pipeline, as the crates' data examples print it and
/// `cargo xtask bench data` reads it: items per second on `threads` threads.
///
/// ```
/// use ssl_core::metrics::PipelineThroughput;
/// let m = PipelineThroughput { pipeline: "tokenise".into(), unit: "tokens".into(), threads: 2, per_sec: 1000.0 };
/// assert_eq!(m.line(true), r#"{"pipeline":"tokenise","unit":"tokens","threads":2,"per_sec":1000.0}"#);
/// assert_eq!(m.line(false), "tokenise: 1000 tokens/s on 2 thread(s) (500 per thread)");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineThroughput {
    /// What was measured.
    pub pipeline: String,
    /// What `per_sec` counts (`images`, `clips`, `tokens`).
    pub unit: String,
    /// Threads used.
    pub threads: usize,
    /// Items per second over all threads.
    pub per_sec: f64,
}

impl PipelineThroughput {
    /// A measurement of `pipeline`: `per_sec` `unit`s per second on `threads` threads.
    pub fn new(pipeline: &str, unit: &str, threads: usize, per_sec: f64) -> Self {
        Self { pipeline: pipeline.into(), unit: unit.into(), threads, per_sec }
    }

    /// Prints [`line`](Self::line) to stdout.
    pub fn print(&self, json: bool) {
        println!("{}", self.line(json));
    }

    /// The measurement as one JSON line (`json`) or as a sentence.
    pub fn line(&self, json: bool) -> String {
        if json {
            serde_json::to_string(self).unwrap_or_default()
        } else {
            let per_thread = self.per_sec / self.threads.max(1) as f64;
            format!(
                "{}: {:.0} {}/s on {} thread(s) ({per_thread:.0} per thread)",
                self.pipeline, self.per_sec, self.unit, self.threads
            )
        }
    }
}

/// Keeps records in memory; clones share the same buffer.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<StepRecord>>>);

impl MemorySink {
    /// A copy of the records so far.
    pub fn records(&self) -> Vec<StepRecord> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl MetricsSink for MemorySink {
    fn record(&mut self, record: &StepRecord) -> Result<()> {
        if let Ok(mut v) = self.0.lock() {
            v.push(record.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64) -> StepRecord {
        StepRecord {
            step,
            loss: 1.0,
            lr: 0.1,
            samples_per_sec: 5.0,
            metrics: BTreeMap::from([("acc".into(), 0.5)]),
        }
    }

    #[test]
    fn jsonl_is_flat_and_resume_drops_later_steps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut s = JsonlSink::open(&p, None).unwrap();
        for i in 1..=4 {
            s.record(&rec(i)).unwrap();
        }
        s.finish().unwrap();
        let first = fs::read_to_string(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        for key in ["step", "loss", "lr", "samples_per_sec", "acc"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        let mut s = JsonlSink::open(&p, Some(2)).unwrap();
        s.record(&rec(3)).unwrap();
        s.finish().unwrap();
        let steps: Vec<u64> = fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<StepRecord>(l).unwrap().step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
    }
}
