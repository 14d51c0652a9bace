"""Analysis stage: what a labels table or a model's predictions look like.

:mod:`~steelfast.analysis.eda` (tables) → :mod:`~steelfast.analysis.eda_plots` (figures) →
:mod:`~steelfast.analysis.eda_report` (report folder); :mod:`~steelfast.analysis.overlay` (masks
drawn over an image); :mod:`~steelfast.analysis.evaluate` (a model scored per class on labelled
images).
"""

__all__: list[str] = []
