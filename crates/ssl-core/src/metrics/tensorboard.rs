//! TensorBoard event files: the step records as scalars that TensorBoard reads.
//!
//! An event file is a sequence of TFRecords (`u64` little-endian length, its masked CRC-32C, the
//! bytes, their masked CRC-32C), each holding one `tensorflow.Event` protobuf. The first event
//! names the format (`file_version = "brain.Event:2"`); each record then becomes one event at
//! its step with a `Summary` of `simple_value`s: `loss`, `lr`, `samples_per_sec` and the
//! method's metrics. A resumed run writes a new file that starts with a `SessionLog.START` at
//! the first step after the resumed checkpoint, which tells TensorBoard to drop the scalars the
//! interrupted run logged from there on. The messages are the subset of TensorFlow's `event.proto` and `summary.proto`
//! needed here, encoded with `prost`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::{MetricsSink, StepRecord};
use crate::error::{Error, IoResultExt, Result};

/// `tensorflow.Event`, the fields written here.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value`. In TensorFlow's proto the value is a
/// `oneof` member, so it is written even when it is 0.0 (TensorBoard keeps a value only when the
/// field is present): `optional` gives prost the same presence.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// `tensorflow.SessionLog`; status 1 is `START`.
#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// TFRecord's CRC mask: rotate right by 15 bits, add a constant.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Writes step records as TensorBoard scalars into `events.out.tfevents.<time>.ssl-rs.<pid>` in
/// a folder (the run directory's `tensorboard/`; point `tensorboard --logdir` at it).
///
/// ```
/// use ssl_core::metrics::{MetricsSink, StepRecord, TensorBoardSink};
/// let dir = tempfile::tempdir()?;
/// let mut sink = TensorBoardSink::create(dir.path(), None)?;
/// sink.record(&StepRecord { step: 10, loss: 0.5, lr: 1e-3, samples_per_sec: 100.0, metrics: Default::default() })?;
/// sink.finish()?;
/// assert!(sink.path().file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TensorBoardSink {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    resumed_from: Option<u64>,
}

impl TensorBoardSink {
    /// A sink writing a new event file in `dir` (created if missing). The file is created
    /// with the first record, so a run that fails before training (a bad resume) leaves none.
    /// `resumed_from = Some(step)` (a run resumed from the checkpoint of `step` completed steps)
    /// starts it with a `SessionLog.START` at `step + 1`: TensorBoard then drops every scalar the
    /// earlier files hold from that step on, as `metrics.jsonl` drops those records.
    pub fn create(dir: &Path, resumed_from: Option<u64>) -> Result<Self> {
        fs::create_dir_all(dir).with_path(dir)?;
        let name = format!("events.out.tfevents.{}.ssl-rs.{}", now() as u64, std::process::id());
        Ok(Self { path: dir.join(name), file: None, resumed_from })
    }

    /// The event file (it exists once a record has been written).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        if self.file.is_none() {
            let mut file = BufWriter::new(File::create(&self.path).with_path(&self.path)?);
            let wall = now();
            let version = What::FileVersion("brain.Event:2".into());
            let mut head = vec![Event { wall_time: wall, step: 0, what: Some(version) }];
            if let Some(step) = self.resumed_from {
                let start = What::SessionLog(SessionLog { status: 1 });
                head.push(Event { wall_time: wall, step: step as i64 + 1, what: Some(start) });
            }
            for e in head {
                file.write_all(&record(&e.encode_to_vec())).with_path(&self.path)?;
            }
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => file.write_all(&record(&event.encode_to_vec())).with_path(&self.path),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush().with_path(&self.path),
            None => Ok(()),
        }
    }
}

impl MetricsSink for TensorBoardSink {
    fn record(&mut self, r: &StepRecord) -> Result<()> {
        let scalar = |tag: &str, v: f64| SummaryValue { tag: tag.to_string(), simple_value: Some(v as f32) };
        let mut value =
            vec![scalar("loss", r.loss), scalar("lr", r.lr), scalar("samples_per_sec", r.samples_per_sec)];
        value.extend(r.metrics.iter().map(|(k, v)| scalar(k, *v)));
        let step =
            i64::try_from(r.step).map_err(|_| Error::invalid("step", format!("{} is too large", r.step)))?;
        self.write(&Event { wall_time: now(), step, what: Some(What::Summary(Summary { value })) })?;
        // Readers (TensorBoard while training runs) see every record as it is logged.
        self.flush()
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        match &self.file {
            Some(file) => file.get_ref().sync_all().with_path(&self.path),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the records back, checking both CRCs.
    fn read_records(path: &Path) -> Vec<Event> {
        let bytes = fs::read(path).expect("read");
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().expect("8")) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4")),
                masked_crc(len_bytes)
            );
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().expect("4"));
            assert_eq!(crc, masked_crc(data));
            events.push(Event::decode(data).expect("event"));
            at += 16 + len;
        }
        events
    }

    #[test]
    fn known_crc_and_record_layout() {
        // CRC-32C of "123456789" is 0xe3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
        let r = record(b"abc");
        assert_eq!(r.len(), 3 + 16);
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
    }

    #[test]
    fn records_become_scalar_events_after_the_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = TensorBoardSink::create(dir.path(), Some(4)).expect("create");
        assert!(!sink.path().exists(), "no file before the first record");
        let mut metrics = std::collections::BTreeMap::new();
        metrics.insert("accuracy".to_string(), 0.25);
        sink.record(&StepRecord { step: 6, loss: 1.5, lr: 0.1, samples_per_sec: 10.0, metrics })
            .expect("record");
        sink.finish().expect("finish");
        let events = read_records(sink.path());
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        assert_eq!(
            (events[1].step, events[1].what.clone()),
            (5, Some(What::SessionLog(SessionLog { status: 1 })))
        );
        let Some(What::Summary(s)) = &events[2].what else { panic!("{:?}", events[2]) };
        assert_eq!(events[2].step, 6);
        let tags: Vec<(&str, Option<f32>)> =
            s.value.iter().map(|v| (v.tag.as_str(), v.simple_value)).collect();
        assert_eq!(
            tags,
            [
                ("loss", Some(1.5)),
                ("lr", Some(0.1)),
                ("samples_per_sec", Some(10.0)),
                ("accuracy", Some(0.25))
            ]
        );
    }

    #[test]
    fn a_zero_scalar_is_written_not_left_out() {
        let v = SummaryValue { tag: "x".into(), simple_value: Some(0.0) };
        // Field 2, wire type 5 (32-bit): key 0x15, then four zero bytes.
        let bytes = v.encode_to_vec();
        assert!(bytes.ends_with(&[0x15, 0, 0, 0, 0]), "{bytes:?}");
    }
}
