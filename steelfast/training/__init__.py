"""Training stage for the gated EfficientNet U-Net: the loop, out-of-fold tuning, cross-validation."""
