"""Inference stage: files in, a submission file out.

The model side (decode, batch, model, post-process, RLE) lives in :mod:`steelfast.segment` and
:mod:`steelfast.backends`; this package holds what surrounds a run:

* :mod:`steelfast.inference.writer`: the output side of ``steelfast-segment``: checks made before
  any image is read, the resume journal with the run's identity (model hash and result-changing
  options), the failures file and the run record.
* :mod:`steelfast.inference.decode`: the decode stage shared by every engine: images or paths
  in, grey arrays out, and the run's size rules (skip or resize other sizes).
* :mod:`steelfast.inference.records`: defect records (connected components with box, area and
  scores, found by the compiled core in the RLE pass) per image.
* :mod:`steelfast.inference.record_writer`: records to a JSON Lines or COCO file, atomically.
* :mod:`steelfast.inference.ray_engine`: the same submission on Ray Data (``--engine ray``):
  actors that reuse :class:`~steelfast.segment.Segmenter`, Ray imported only there.
* :mod:`steelfast.inference.lock`: the lock file that keeps one writer per output.
* :mod:`steelfast.inference.errors`: the errors of a run that are neither bad values nor bad
  paths (a busy output, a resume that does not match, a backend that cannot run here).
"""

from __future__ import annotations

__all__: list[str] = []
