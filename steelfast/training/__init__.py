"""Training stage.

The baseline U-Net: :mod:`~steelfast.training.config` (options, results) →
:mod:`~steelfast.training.data` (Kaggle folder, split, loader) → :mod:`~steelfast.training.loop`
(epochs, checkpoints, resume) with :mod:`~steelfast.training.epoch` (steps),
:mod:`~steelfast.training.validation` (score), :mod:`~steelfast.training.tune` (post-processing),
:mod:`~steelfast.training.history` (record), :mod:`~steelfast.training.state` (resume state) and
:mod:`~steelfast.training.distributed` (DDP).

The gated EfficientNet U-Net on real images: :mod:`~steelfast.training.gated` (trainer) →
:mod:`~steelfast.training.crossval` (folds, out-of-fold predictions) →
:mod:`~steelfast.training.gate_tuning` (gate, thresholds, minimum areas) →
:mod:`~steelfast.training.fit` (end to end), with :mod:`~steelfast.training.mix` (real plus
synthetic images at a ratio).
"""

__all__: list[str] = []
