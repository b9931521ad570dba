//! Fixed sine-cosine position embeddings.
//!
//! The frequencies are the Transformer paper's (Vaswani et al., 2017, §3.5): for `dim = 2k`,
//! `ω_i = 1 / 10000^(2i / dim)` for `i < k`. As in MoCo v3 and MAE (and the TensorFlow Transformer
//! code they cite), the sines fill the first half of the vector and the cosines the second half,
//! instead of interleaving them. Values are computed in `f64` and returned as `f32` on the CPU;
//! move them with `.to_device(...)`.

use tch::{Device, Kind, TchError, Tensor};

use crate::error::{Error, Result, TorchResultExt};

/// The wavelength base of the Transformer paper, `10000`.
pub const SINCOS_BASE: f64 = 10_000.0;

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

fn check_count(name: &str, n: i64) -> Result<()> {
    if n < 0 {
        Err(Error::invalid(name, format!("must be non-negative, got {n}")))
    } else {
        Ok(())
    }
}

/// `[N, dim]` embeddings (in `f64`) of the positions in `pos: [N]`; `dim` is even and positive.
fn embed(dim: i64, pos: &Tensor) -> Result<Tensor, TchError> {
    let half = dim / 2;
    // ω_i = base^(-i / half) = exp(-ln(base) · i / half)
    let omega = Tensor::f_arange(half, F64)?.f_mul_scalar(-SINCOS_BASE.ln() / half as f64)?.f_exp()?;
    let angles = pos.f_outer(&omega)?; // [N, half]
    Tensor::f_cat(&[angles.f_sin()?, angles.f_cos()?], 1)
}

/// Sine-cosine embeddings of positions `0..positions`: `[positions, dim]`, sines of
/// `p · ω_i` in columns `0..dim/2` and cosines in `dim/2..dim`.
///
/// Errors with [`Error::InvalidArgument`] unless `dim` is positive and even and `positions` is
/// non-negative.
///
/// ```
/// use ssl_core::blocks::sincos_1d;
/// let pe = sincos_1d(8, 16)?;
/// assert_eq!(pe.size(), [16, 8]);
/// assert_eq!(pe.double_value(&[0, 0]), 0.0); // sin(0)
/// assert_eq!(pe.double_value(&[0, 4]), 1.0); // cos(0)
/// assert!((pe.double_value(&[3, 0]) - 3f64.sin()).abs() < 1e-6); // ω_0 = 1
/// assert!(sincos_1d(7, 16).is_err());
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn sincos_1d(dim: i64, positions: i64) -> Result<Tensor> {
    if dim <= 0 || dim % 2 != 0 {
        return Err(Error::invalid("dim", format!("must be positive and even, got {dim}")));
    }
    check_count("positions", positions)?;
    let pos = Tensor::f_arange(positions, F64).torch_context("sincos_1d")?;
    embed(dim, &pos).and_then(|e| e.f_to_kind(Kind::Float)).torch_context("sincos_1d")
}

/// 2-D sine-cosine embeddings of a `grid_h × grid_w` patch grid, MAE's
/// `get_2d_sincos_pos_embed` layout: `[(1 if cls_token) + grid_h · grid_w, dim]`.
///
/// Patches are in row-major order (`index = row · grid_w + col`). Each row holds two 1-D
/// embeddings of width `dim / 2`: the **column** index in the first half and the **row** index
/// in the second half. (MAE names the first half `emb_h`, but feeds it `meshgrid(w, h)[0]`, the
/// column coordinate; we reproduce the values, so MAE checkpoints line up.) With `cls_token`, a
/// row of zeros comes first.
///
/// Errors with [`Error::InvalidArgument`] unless `dim` is a positive multiple of 4 and the grid
/// sizes are non-negative.
///
/// ```
/// use ssl_core::blocks::{sincos_1d, sincos_2d};
/// use ssl_core::tch::IndexOp;
/// let pe = sincos_2d(16, 2, 3, true)?;
/// assert_eq!(pe.size(), [1 + 2 * 3, 16]);
/// assert_eq!(pe.i(0).abs().sum(ssl_core::tch::Kind::Float).double_value(&[]), 0.0); // cls
/// // patch (row 1, col 2) = [1-D(col 2) | 1-D(row 1)]
/// let one_d = sincos_1d(8, 3)?;
/// assert!(pe.i((1 + 1 * 3 + 2, ..8)).allclose(&one_d.i(2), 1e-6, 1e-6, false));
/// assert!(pe.i((1 + 1 * 3 + 2, 8..)).allclose(&one_d.i(1), 1e-6, 1e-6, false));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn sincos_2d(dim: i64, grid_h: i64, grid_w: i64, cls_token: bool) -> Result<Tensor> {
    if dim <= 0 || dim % 4 != 0 {
        return Err(Error::invalid("dim", format!("must be a positive multiple of 4, got {dim}")));
    }
    check_count("grid_h", grid_h)?;
    check_count("grid_w", grid_w)?;
    let build = || -> Result<Tensor, TchError> {
        let rows = Tensor::f_arange(grid_h, F64)?.f_repeat_interleave_self_int(grid_w, 0, None)?;
        let cols = Tensor::f_arange(grid_w, F64)?.f_repeat([grid_h])?;
        let mut parts = Vec::with_capacity(2);
        if cls_token {
            parts.push(Tensor::f_zeros([1, dim], F64)?);
        }
        parts.push(Tensor::f_cat(&[embed(dim / 2, &cols)?, embed(dim / 2, &rows)?], 1)?);
        Tensor::f_cat(&parts, 0)?.f_to_kind(Kind::Float)
    };
    build().torch_context("sincos_2d")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::IndexOp;

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    #[test]
    fn base_is_pinned() {
        assert_eq!(SINCOS_BASE, 10_000.0);
    }

    #[test]
    fn pinned_values_1d() {
        let pe = sincos_1d(4, 3).unwrap();
        // dim 4: ω = [1, 1/100]; row p = [sin p, sin p/100, cos p, cos p/100]
        for p in 0..3 {
            let pf = p as f64;
            let expected = [pf.sin(), (pf / 100.0).sin(), pf.cos(), (pf / 100.0).cos()];
            for (c, e) in expected.iter().enumerate() {
                assert!((pe.double_value(&[p, c as i64]) - e).abs() < 1e-6, "p {p} c {c}");
            }
        }
        let pe = sincos_1d(16, 1).unwrap();
        assert_eq!(max_abs(&pe.i((0, ..8))), 0.0);
        assert_eq!(pe.i((0, 8..)).min().double_value(&[]), 1.0);
        assert_eq!(pe.kind(), Kind::Float);
    }

    #[test]
    fn lowest_frequency_matches_the_formula() {
        // Last sine column of dim 8: ω_3 = 10000^(-6/8).
        let pe = sincos_1d(8, 50).unwrap();
        let omega = SINCOS_BASE.powf(-6.0 / 8.0);
        assert!((pe.double_value(&[49, 3]) - (49.0 * omega).sin()).abs() < 1e-6);
    }

    #[test]
    fn cls_row_is_zero_and_optional() {
        let with = sincos_2d(8, 2, 2, true).unwrap();
        let without = sincos_2d(8, 2, 2, false).unwrap();
        assert_eq!(max_abs(&with.i(0)), 0.0);
        assert_eq!(max_abs(&(with.i(1..) - &without)), 0.0);
    }

    #[test]
    fn invalid_arguments_name_the_argument() {
        let name_of = |r: Result<Tensor>| match r {
            Err(Error::InvalidArgument { name, .. }) => name,
            other => panic!("expected an invalid argument, got {other:?}"),
        };
        assert_eq!(name_of(sincos_1d(0, 4)), "dim");
        assert_eq!(name_of(sincos_1d(5, 4)), "dim");
        assert_eq!(name_of(sincos_1d(4, -1)), "positions");
        assert_eq!(name_of(sincos_2d(6, 2, 2, false)), "dim");
        assert_eq!(name_of(sincos_2d(8, -2, 2, false)), "grid_h");
        assert_eq!(name_of(sincos_2d(8, 2, -1, true)), "grid_w");
        assert_eq!(sincos_1d(4, 0).unwrap().size(), [0, 4]);
        assert_eq!(sincos_2d(4, 0, 3, true).unwrap().size(), [1, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn shape_and_range_1d(half in 1i64..16, positions in 0i64..40) {
            let pe = sincos_1d(2 * half, positions).unwrap();
            prop_assert_eq!(pe.size(), vec![positions, 2 * half]);
            if positions > 0 {
                prop_assert!(max_abs(&pe) <= 1.0);
                // sin² + cos² = 1 for every frequency
                let s = pe.i((.., ..half));
                let c = pe.i((.., half..));
                prop_assert!(max_abs(&(&s * &s + &c * &c - 1.0)) < 1e-5);
            }
        }

        #[test]
        fn layout_2d_matches_1d(quarter in 1i64..6, h in 1i64..6, w in 1i64..6, cls: bool) {
            let dim = 4 * quarter;
            let pe = sincos_2d(dim, h, w, cls).unwrap();
            let off = i64::from(cls);
            prop_assert_eq!(pe.size(), vec![off + h * w, dim]);
            prop_assert!(max_abs(&pe) <= 1.0);
            let one_d = sincos_1d(dim / 2, h.max(w)).unwrap();
            for r in 0..h {
                for c in 0..w {
                    let row = pe.i(off + r * w + c);
                    prop_assert!(max_abs(&(row.i(..dim / 2) - one_d.i(c))) < 1e-6);
                    prop_assert!(max_abs(&(row.i(dim / 2..) - one_d.i(r))) < 1e-6);
                }
            }
        }
    }
}
