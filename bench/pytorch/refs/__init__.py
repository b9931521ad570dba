"""PyTorch reference workloads, one module per modality."""
