"""Data stage: labelled real images in memory and the augmentations that fit steel."""
