use tch::{Device, Tensor};

/// A batch the trainer can move to a device and count.
///
/// Implemented for a single [`Tensor`], for `Vec<Tensor>` (for example the views of a
/// contrastive batch) and for pairs; methods with richer inputs define their own struct.
///
/// ```
/// use ssl_core::data::Batch;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let views: Vec<Tensor> = (0..2).map(|_| Tensor::zeros([4, 3], (Kind::Float, Device::Cpu))).collect();
/// assert_eq!(views.batch_size(), 4);
/// assert_eq!(views.to_device(Device::Cpu).len(), 2);
/// ```
pub trait Batch: Send + 'static {
    /// The batch on `device` (a no-op when it is already there).
    fn to_device(&self, device: Device) -> Self;
    /// The number of samples in the batch.
    fn batch_size(&self) -> usize;
}

fn rows(t: &Tensor) -> usize {
    t.size().first().map_or(0, |&n| usize::try_from(n).unwrap_or(0))
}

impl Batch for Tensor {
    fn to_device(&self, device: Device) -> Self {
        self.to_device(device)
    }
    fn batch_size(&self) -> usize {
        rows(self)
    }
}

impl Batch for Vec<Tensor> {
    fn to_device(&self, device: Device) -> Self {
        self.iter().map(|t| t.to_device(device)).collect()
    }
    fn batch_size(&self) -> usize {
        self.first().map_or(0, rows)
    }
}

impl<A: Batch, B: Batch> Batch for (A, B) {
    fn to_device(&self, device: Device) -> Self {
        (self.0.to_device(device), self.1.to_device(device))
    }
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
}
