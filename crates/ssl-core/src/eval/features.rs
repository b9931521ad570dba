//! From inputs to validated, standardised features: [`extract_features`], [`Standardizer`],
//! [`validate_labelled`].

use tch::{Device, Kind, Tensor};

use crate::error::TorchResultExt;
use crate::{Encoder, Error, Result};

/// Runs `encoder` over `inputs` (`[N, ...]`) and returns the representations as `[N, D]` float32
/// on the CPU, where `D = encoder.output_dim()`.
///
/// The encoder runs in evaluation mode (`train = false`) under `no_grad`, `batch_size` rows at a
/// time, each batch moved to `device` first (the encoder's variables must live there). An
/// encoder that returns anything but `[b, output_dim]` for a batch of `b` rows is an
/// [`Error::Shape`] naming "encoder output".
///
/// ```
/// use ssl_core::eval::extract_features;
/// use ssl_core::{Encoder, tch::{Device, Kind, Tensor}};
///
/// struct Halve;
/// impl Encoder for Halve {
///     fn output_dim(&self) -> i64 { 2 }
///     fn encode(&self, x: &Tensor, _train: bool) -> Tensor { x * 0.5 }
/// }
/// let x = Tensor::ones([5, 2], (Kind::Double, Device::Cpu));
/// let z = extract_features(&Halve, &x, 2, Device::Cpu)?;
/// assert_eq!((z.size(), z.kind()), (vec![5, 2], Kind::Float));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn extract_features(
    encoder: &dyn Encoder,
    inputs: &Tensor,
    batch_size: usize,
    device: Device,
) -> Result<Tensor> {
    if batch_size == 0 {
        return Err(Error::invalid("batch_size", "must be at least 1"));
    }
    let size = inputs.size();
    let Some(&n) = size.first() else {
        return Err(Error::shape("encoder inputs", "[N, ...] (a batch dimension)", &size));
    };
    let d = encoder.output_dim();
    if d <= 0 {
        return Err(Error::shape("encoder output", "output_dim() > 0", &[d]));
    }
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let _no_grad = tch::no_grad_guard();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let z = encoder.encode(&inputs.narrow(0, start, len).to_device(device), false);
        let zs = z.size();
        if zs != [len, d] {
            return Err(Error::shape(
                "encoder output",
                format!("[{len}, {d}] (batch rows, output_dim)"),
                &zs,
            ));
        }
        parts.push(z.to_kind(Kind::Float).to_device(Device::Cpu));
        start += len;
    }
    if parts.is_empty() {
        return Ok(Tensor::zeros([0, d], (Kind::Float, Device::Cpu)));
    }
    Tensor::f_cat(&parts, 0).torch_context("concatenating encoder outputs")
}

/// Per-feature standardisation, `(x - mean) / std`, with statistics fitted on one split.
///
/// Probes fit it on the **train split only** and apply it to both splits, so nothing about the
/// test split leaks into training. `std` is the population standard deviation (divide by `N`,
/// so a one-row split is valid) clamped to at least [`Standardizer::MIN_STD`], which maps a
/// constant feature to 0 instead of NaN. Statistics are kept in float64.
///
/// ```
/// use ssl_core::eval::Standardizer;
/// use ssl_core::tch::Tensor;
/// let train = Tensor::from_slice(&[1.0f32, 10.0, 3.0, 10.0]).view([2, 2]);
/// let s = Standardizer::fit(&train)?;
/// let z = s.apply(&Tensor::from_slice(&[2.0f32, 10.0]).view([1, 2]));
/// assert_eq!((z.double_value(&[0, 0]), z.double_value(&[0, 1])), (0.0, 0.0));
/// # Ok::<(), ssl_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Standardizer {
    /// Per-feature mean, `[D]` float64.
    pub mean: Tensor,
    /// Per-feature standard deviation, `[D]` float64, at least [`Standardizer::MIN_STD`].
    pub std: Tensor,
}

impl Standardizer {
    /// The smallest standard deviation used; constant features stay finite.
    pub const MIN_STD: f64 = 1e-6;

    /// Fits mean and standard deviation per column of a `[N, D]` floating-point tensor, `N > 0`.
    pub fn fit(features: &Tensor) -> Result<Self> {
        let size = features.size();
        if size.len() != 2 || size[0] == 0 {
            return Err(Error::shape("standardizer input", "[N, D] with N > 0", &size));
        }
        if !features.is_floating_point() {
            return Err(Error::invalid(
                "features",
                format!("standardizer needs floating-point features, got {:?}", features.kind()),
            ));
        }
        let x = features.to_kind(Kind::Double);
        let mean = x.mean_dim(0, false, Kind::Double);
        let std = x.std_dim(0, false, false).clamp_min(Self::MIN_STD);
        Ok(Self { mean, std })
    }

    /// Standardises `features` (`[N, D]`, same `D` as the fit) with the fitted statistics; the
    /// result has the kind and device of `features`.
    ///
    /// # Panics
    /// If the feature dimension differs from the one fitted (a programming error: check shapes
    /// before, as the probes do).
    pub fn apply(&self, features: &Tensor) -> Tensor {
        let device = features.device();
        ((features.to_kind(Kind::Double) - self.mean.to_device(device)) / self.std.to_device(device))
            .to_kind(features.kind())
    }
}

/// Checks one labelled split before a probe uses it; `what` names the split in errors (for
/// example `"probe train split"`).
///
/// Requires `features` to be `[N, D]` floating point with only finite values and `labels` to be
/// `[N]` int64 class indices `>= 0`, with `N > 0` and `D > 0`. Layout problems are
/// [`Error::Shape`], content problems [`Error::Data`].
///
/// ```
/// use ssl_core::eval::validate_labelled;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let x = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
/// let err = validate_labelled(&x, &Tensor::from_slice(&[0i64, 1]), "probe test split")
///     .expect_err("3 rows but 2 labels");
/// assert!(err.to_string().contains("probe test split"));
/// ```
pub fn validate_labelled(features: &Tensor, labels: &Tensor, what: &str) -> Result<()> {
    let fs = features.size();
    if fs.len() != 2 || fs[1] == 0 {
        return Err(Error::shape(format!("{what} features"), "[N, D] with D > 0", &fs));
    }
    if !features.is_floating_point() {
        return Err(Error::data(what, format!("features must be floating point, got {:?}", features.kind())));
    }
    validate_labels(labels, fs[0], what)?;
    let bad = i64::try_from(features.isfinite().logical_not().sum(Kind::Int64))
        .torch_context(format!("{what}: counting non-finite features"))?;
    if bad > 0 {
        return Err(Error::data(what, format!("{bad} feature values are NaN or infinite")));
    }
    Ok(())
}

/// Checks that `labels` are `[n]` int64 class indices `>= 0` with `n > 0`.
pub(crate) fn validate_labels(labels: &Tensor, n: i64, what: &str) -> Result<()> {
    let ls = labels.size();
    if ls.len() != 1 {
        return Err(Error::shape(format!("{what} labels"), format!("[{n}]"), &ls));
    }
    if labels.kind() != Kind::Int64 {
        return Err(Error::data(
            what,
            format!("labels must be int64 class indices, got {:?}", labels.kind()),
        ));
    }
    if ls[0] != n {
        return Err(Error::shape(format!("{what} labels"), format!("[{n}] (one label per row)"), &ls));
    }
    if n == 0 {
        return Err(Error::data(what, "the split is empty"));
    }
    let min = i64::try_from(labels.min()).torch_context(format!("{what}: smallest label"))?;
    if min < 0 {
        return Err(Error::data(what, format!("labels must be >= 0, found {min}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testutil::{blobs, TinyMlp};
    use proptest::prelude::*;

    fn err_text(r: Result<()>) -> String {
        r.expect_err("validation should fail").to_string()
    }

    #[test]
    fn extract_matches_one_big_batch_and_checks_output_shape() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let enc = TinyMlp::new(&vs.root(), 4, 6, 3, 1);
        let x = Tensor::from_slice(&(0..28).map(|v| v as f32 / 10.0).collect::<Vec<_>>()).view([7, 4]);
        let z = extract_features(&enc, &x, 3, Device::Cpu).expect("extract");
        let whole = tch::no_grad(|| enc.encode(&x, false));
        assert_eq!(z.size(), vec![7, 3]);
        assert!(z.allclose(&whole, 1e-6, 1e-6, false));

        let mut bad = TinyMlp::new(&vs.root(), 4, 6, 3, 2);
        bad.claimed_dim = 5;
        let e = extract_features(&bad, &x, 3, Device::Cpu).expect_err("wrong dim");
        assert!(matches!(&e, Error::Shape { what, .. } if what == "encoder output"), "{e}");
        assert!(extract_features(&enc, &x, 0, Device::Cpu).is_err());
    }

    #[test]
    fn standardizer_uses_fit_statistics_only() {
        let (train, _) = blobs(10, 2, 3, 2.0, 5);
        let (test, _) = blobs(5, 2, 3, 2.0, 6);
        let s = Standardizer::fit(&train).expect("fit");
        let shifted = s.apply(&(&test + 7.5));
        let expected = s.apply(&test) + 7.5 / s.std.to_kind(Kind::Float);
        assert!(shifted.allclose(&expected, 1e-5, 1e-5, false));
        // Refitting on the shifted test split would remove the shift; fit-on-train must not.
        let refit = Standardizer::fit(&(&test + 7.5)).expect("fit").apply(&(&test + 7.5));
        assert!(!shifted.allclose(&refit, 1e-2, 1e-2, false));
    }

    #[test]
    fn standardizer_constant_column_maps_to_zero() {
        let x = Tensor::from_slice(&[3.0f64, 1.0, 3.0, 2.0]).view([2, 2]);
        let z = Standardizer::fit(&x).expect("fit").apply(&x);
        assert_eq!(Vec::<f64>::try_from(z.select(1, 0)).expect("f64"), vec![0.0, 0.0]);
        assert!(Standardizer::fit(&Tensor::from_slice(&[1i64, 2]).view([1, 2])).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn standardised_columns_have_zero_mean_unit_std(
            (n, d, vals) in (2usize..16, 1usize..5)
                .prop_flat_map(|(n, d)| (Just(n), Just(d), proptest::collection::vec(-100.0f64..100.0, n * d)))
        ) {
            let x = Tensor::from_slice(&vals).view([n as i64, d as i64]);
            let s = Standardizer::fit(&x).expect("fit");
            let z = s.apply(&x);
            let mean: Vec<f64> = Vec::try_from(z.mean_dim(0, false, Kind::Double)).expect("f64");
            let std: Vec<f64> = Vec::try_from(z.std_dim(0, false, false)).expect("f64");
            let raw_std: Vec<f64> = Vec::try_from(&s.std).expect("f64");
            for j in 0..d {
                prop_assert!(mean[j].abs() < 1e-9, "column {} mean {}", j, mean[j]);
                if raw_std[j] > 1e-3 {
                    prop_assert!((std[j] - 1.0).abs() < 1e-9, "column {} std {}", j, std[j]);
                }
            }
        }
    }

    #[test]
    fn validation_names_the_split() {
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let what = "probe train split";
        assert!(validate_labelled(&x, &y, what).is_ok());
        let cases = [
            ("mismatched N", validate_labelled(&x, &y.narrow(0, 0, 3), what)),
            ("1-D features", validate_labelled(&x.flatten(0, -1), &y, what)),
            ("float labels", validate_labelled(&x, &y.to_kind(Kind::Float), what)),
            ("negative labels", validate_labelled(&x, &(&y - 1), what)),
            ("int features", validate_labelled(&x.to_kind(Kind::Int64), &y, what)),
            ("empty split", validate_labelled(&x.narrow(0, 0, 0), &y.narrow(0, 0, 0), what)),
        ];
        for (case, r) in cases {
            let msg = err_text(r);
            assert!(msg.contains(what), "{case}: {msg}");
        }
        let nan = x.copy();
        let _ = nan.get(2).get(1).fill_(f64::NAN);
        let msg = err_text(validate_labelled(&nan, &y, what));
        assert!(msg.contains(what) && msg.contains("NaN"), "{msg}");
        let inf = Tensor::full([4, 3], f64::INFINITY, (Kind::Float, Device::Cpu));
        assert!(err_text(validate_labelled(&inf, &y, what)).contains("infinite"));
    }
}
