"""Data stage: labelled images in memory and on disk, and the synthetic data made for demos.

:mod:`~steelfast.data.dataset` (torch ``Dataset``, splits, loaders for the U-Net),
:mod:`~steelfast.data.real` (labelled real images in memory), :mod:`~steelfast.data.augment`
(augmentations that fit steel), :mod:`~steelfast.data.realsynth` (synthetic images from real
parts) and :mod:`~steelfast.data.synth` (synthetic images drawn from scratch, with
:mod:`~steelfast.data.synth_shapes` and :mod:`~steelfast.data.synth_texture`).
"""

__all__: list[str] = []
