//! Loss functions shared by several methods, written once.

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

fn check_pair(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    let (sa, sb) = (a.size(), b.size());
    if sa.len() != 2 || sa != sb || sa[0] == 0 {
        return Err(Error::shape(
            what,
            format!("two non-empty [N, D] tensors of equal shape, the other is {sb:?}"),
            &sa,
        ));
    }
    Ok(())
}

/// The normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).
///
/// `z1[i]` and `z2[i]` are the two views of sample `i`. Each of the `2N` embeddings is
/// classified against the other `2N - 1` by cosine similarity / `temperature`, its positive being
/// the other view; the loss is the mean over all `2N`. SimCLR's default temperature is 0.1
/// (0.5 in the CIFAR experiments).
///
/// ```
/// use ssl_core::loss::nt_xent;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let z = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
/// let aligned = nt_xent(&z, &z, 0.1).unwrap().double_value(&[]);
/// let random = nt_xent(&z, &Tensor::randn([8, 16], (Kind::Float, Device::Cpu)), 0.1).unwrap().double_value(&[]);
/// assert!(aligned < random);
/// ```
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    check_pair(z1, z2, "nt_xent views")?;
    if temperature <= 0.0 {
        return Err(Error::invalid("temperature", "must be positive"));
    }
    let (sim, targets) = two_view_similarities(z1, z2, true)?;
    Ok((sim / temperature).cross_entropy_for_logits(&targets))
}

/// Cosine similarities of this process's `2N` embeddings of two views against the `2·W·N` of
/// all `W` processes of a data-parallel job (just its own without one: see
/// [`dist::all_gather_with_grad`](crate::dist::all_gather_with_grad)), each embedding's
/// similarity to itself masked to -inf (a sample is never its own negative), and the column of
/// each embedding's positive (its other view). `gather: false` keeps to this process's own.
fn two_view_similarities(z1: &Tensor, z2: &Tensor, gather: bool) -> Result<(Tensor, Tensor)> {
    let n = z1.size()[0];
    let ((all1, offset), (all2, _)) = if gather {
        (crate::dist::all_gather_with_grad(z1)?, crate::dist::all_gather_with_grad(z2)?)
    } else {
        ((z1.shallow_clone(), 0), (z2.shallow_clone(), 0))
    };
    let total = all1.size()[0];
    // This process's rows, taken from the gathered tensors (see `all_gather_with_grad`).
    let anchors = normalize(&Tensor::cat(&[all1.narrow(0, offset, n), all2.narrow(0, offset, n)], 0));
    let candidates = normalize(&Tensor::cat(&[&all1, &all2], 0));
    let device = anchors.device();
    let own = |start: i64| Tensor::arange_start(start, start + n, (Kind::Int64, device));
    // Anchor rows 0..N are views 1 (columns offset..offset+N), rows N..2N views 2 (total+offset..).
    let self_cols = Tensor::cat(&[own(offset), own(total + offset)], 0);
    let mask = Tensor::zeros([2 * n, 2 * total], (Kind::Bool, device)).scatter_value(
        1,
        &self_cols.unsqueeze(1),
        1.0,
    );
    let sim = anchors.matmul(&candidates.transpose(0, 1)).masked_fill(&mask, f64::NEG_INFINITY);
    let targets = Tensor::cat(&[own(total + offset), own(offset)], 0);
    Ok((sim, targets))
}

/// InfoNCE with in-batch negatives (CPC, MoCo v3, CLIP one direction): row `i` of `query`
/// should match row `i` of `keys` among all rows of `keys`. Both are L2-normalised.
///
/// ```
/// use ssl_core::loss::info_nce;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let q = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
/// assert!(info_nce(&q, &q, 0.07).unwrap().double_value(&[]) < 0.1);
/// ```
pub fn info_nce(query: &Tensor, keys: &Tensor, temperature: f64) -> Result<Tensor> {
    check_pair(query, keys, "info_nce query/keys")?;
    if temperature <= 0.0 {
        return Err(Error::invalid("temperature", "must be positive"));
    }
    // In a data-parallel job the keys of every process are negatives (MoCo v3's gathered keys).
    let (keys, offset) = crate::dist::all_gather_with_grad(keys)?;
    let q = normalize(query);
    let k = normalize(&keys);
    let logits = q.matmul(&k.transpose(0, 1)) / temperature;
    let n = q.size()[0];
    let targets = Tensor::arange_start(offset, offset + n, (Kind::Int64, q.device()));
    Ok(logits.cross_entropy_for_logits(&targets))
}

/// InfoNCE against a queue of negatives (MoCo v1/v2, He et al. 2020, eq. 1): the positive of
/// `query[i]` is `positive_keys[i]`; the negatives are the rows of `queue` (`[K, D]`). All are
/// L2-normalised here; MoCo v2's temperature is 0.2.
pub fn info_nce_with_queue(
    query: &Tensor,
    positive_keys: &Tensor,
    queue: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    check_pair(query, positive_keys, "info_nce query/positive keys")?;
    let (qs, ks) = (query.size(), queue.size());
    if ks.len() != 2 || ks[1] != qs[1] {
        return Err(Error::shape("negative queue", format!("[K, {}]", qs[1]), &ks));
    }
    if temperature <= 0.0 {
        return Err(Error::invalid("temperature", "must be positive"));
    }
    let q = normalize(query);
    let k = normalize(positive_keys);
    let l_pos = (&q * &k).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let l_neg = q.matmul(&normalize(queue).transpose(0, 1));
    let logits = Tensor::cat(&[l_pos, l_neg], 1) / temperature;
    let targets = Tensor::zeros([qs[0]], (Kind::Int64, q.device()));
    Ok(logits.cross_entropy_for_logits(&targets))
}

/// BYOL's regression loss (Grill et al. 2020, eq. 2): `2 - 2·cos(p, z)`, averaged over rows.
/// `target` is detached.
pub fn normalized_mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_pair(prediction, target, "normalized_mse prediction/target")?;
    let cos = (normalize(prediction) * normalize(&target.detach())).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    );
    Ok((cos * -2.0 + 2.0).mean(Kind::Float))
}

/// The pretext accuracy of a two-view contrastive batch: the fraction of the `2N` embeddings
/// whose most similar other embedding (cosine) is the other view of the same sample. Computed
/// without gradients; the SimCLR and MoCo papers report it as "contrastive accuracy".
///
/// ```
/// use ssl_core::loss::contrastive_accuracy;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let z = Tensor::eye(4, (Kind::Float, Device::Cpu));
/// assert_eq!(contrastive_accuracy(&z, &z).unwrap().double_value(&[]), 1.0);
/// ```
pub fn contrastive_accuracy(z1: &Tensor, z2: &Tensor) -> Result<Tensor> {
    check_pair(z1, z2, "contrastive_accuracy views")?;
    tch::no_grad(|| {
        let (sim, targets) = two_view_similarities(z1, z2, false)?;
        Ok(sim.argmax(1, false).eq_tensor(&targets).to_kind(Kind::Float).mean(Kind::Float))
    })
}

/// SimCLR's objective output for projections of both views stacked as `[2N, D]` (all first views,
/// then all second views, as one forward pass over `cat([view1, view2])` gives them): the
/// [`nt_xent`] loss with the [`contrastive_accuracy`] as metric `pretext_acc`.
pub fn nt_xent_stacked(z: &Tensor, temperature: f64) -> Result<crate::LossOutput> {
    let rows = z.size().first().copied().unwrap_or(0);
    if rows % 2 != 0 {
        return Err(Error::shape("stacked two-view projections", "[2N, D]", &z.size()));
    }
    let (z1, z2) = (z.narrow(0, 0, rows / 2), z.narrow(0, rows / 2, rows / 2));
    let loss = nt_xent(&z1, &z2, temperature)?;
    let acc = contrastive_accuracy(&z1, &z2)?;
    Ok(crate::LossOutput::new(loss).with_metric("pretext_acc", &acc))
}

/// Rows scaled to unit L2 norm (rows of zeros stay zero).
pub fn normalize(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::Device;

    fn t(rows: &[&[f32]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, -1])
    }

    #[test]
    fn nt_xent_matches_a_hand_computation() {
        // Two samples with orthogonal unit embeddings, views identical.
        let z = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let tau = 0.5;
        // For each of the 4 rows: positive sim 1, negatives: one with sim 1? no: the other
        // sample's two views have sim 0, so logits = [1/tau (pos), 0, 0].
        let expected = -((1.0f64 / tau).exp() / ((1.0f64 / tau).exp() + 2.0)).ln();
        let got = nt_xent(&z, &z, tau).unwrap().double_value(&[]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn queue_loss_with_orthogonal_negatives_is_pinned() {
        let q = t(&[&[1.0, 0.0]]);
        let queue = t(&[&[0.0, 1.0], &[0.0, -1.0]]);
        let got = info_nce_with_queue(&q, &q, &queue, 1.0).unwrap().double_value(&[]);
        let expected = -(1f64.exp() / (1f64.exp() + 2.0)).ln();
        assert!((got - expected).abs() < 1e-6);
    }

    #[test]
    fn shape_errors_name_the_loss() {
        let a = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
        assert!(nt_xent(&a, &b, 0.1).unwrap_err().to_string().contains("nt_xent"));
        assert!(normalized_mse(&a, &b).unwrap_err().to_string().contains("normalized_mse"));
        assert!(info_nce_with_queue(&a, &a, &b, 0.1).unwrap_err().to_string().contains("queue"));
        assert!(nt_xent(&a, &a, 0.0).is_err());
        let e = nt_xent_stacked(&a, 0.1).unwrap_err().to_string();
        assert!(e.contains("stacked two-view projections"), "{e}");
        let stacked = Tensor::cat(&[&b, &b], 0);
        let out = nt_xent_stacked(&stacked, 0.5).unwrap();
        let direct = nt_xent(&b, &b, 0.5).unwrap();
        assert!(out.loss.equal(&direct));
        assert_eq!(out.metrics[0].0, "pretext_acc");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn losses_are_scale_invariant_and_symmetric(seed in 0i64..1000, n in 2i64..6, scale in 0.1f64..10.0) {
            tch::manual_seed(seed);
            let a = Tensor::randn([n, 3], (Kind::Float, Device::Cpu));
            let b = Tensor::randn([n, 3], (Kind::Float, Device::Cpu));
            let l = nt_xent(&a, &b, 0.2).unwrap().double_value(&[]);
            prop_assert!(l >= 0.0);
            prop_assert!((l - nt_xent(&(&a * scale), &b, 0.2).unwrap().double_value(&[])).abs() < 1e-4);
            prop_assert!((l - nt_xent(&b, &a, 0.2).unwrap().double_value(&[])).abs() < 1e-4);
            let m = normalized_mse(&a, &b).unwrap().double_value(&[]);
            prop_assert!((0.0..=4.0 + 1e-6).contains(&m));
            prop_assert!(normalized_mse(&a, &(&a * scale)).unwrap().double_value(&[]) < 1e-5);
        }
    }
}
