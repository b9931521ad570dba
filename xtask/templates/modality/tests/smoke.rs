//! The crate builds, links libtorch and runs a tensor operation.

use @LIB@::ssl_core::tch::{Device, Kind, Tensor};

#[test]
fn links_libtorch_and_computes() {
    let x = Tensor::arange(4, (Kind::Float, Device::Cpu));
    let sum = x.sum(Kind::Float).double_value(&[]);
    assert!((sum - 6.0).abs() < 1e-9, "0 + 1 + 2 + 3 = {sum}");
}
