"""Inference stage: a model and a folder of images in, a submission file (or defect records) out.

The flow, one module per stage::

    checkpoint / ONNX file --(backends: torch, onnxruntime, tensorrt)--> Backend
    folder --(decode)--> grey images --(segmenter: pad, model, encode)--> RLE strings
           --(pipeline: threads, one result per file)--> (run: lock, journal, resume) --> writer

* :mod:`steelfast.inference.segmenter`: :class:`~steelfast.inference.segmenter.Segmenter`, the
  model stage (batch, pad, backend, post-process, RLE).
* :mod:`steelfast.inference.pipeline`: the threaded folder pipeline (``iter_segment_folder``,
  ``segment_folder``).
* :mod:`steelfast.inference.run`: ``segment_to_file``, the ``steelfast-segment`` job;
  :mod:`steelfast.inference.summary` what it returns.
* :mod:`steelfast.inference.backends`: one interface, probabilities for a batch (torch, ONNX
  Runtime, TensorRT with its build plan and engine cache).
* :mod:`steelfast.inference.export`: checkpoint to ONNX; :mod:`steelfast.inference.onnx_fp16` its
  float16 copy.
* :mod:`steelfast.inference.writer`: the output side of ``steelfast-segment``: checks made before
  any image is read, the journal with the run's identity (model hash and result-changing
  options), the failures file and the run record.
* :mod:`steelfast.inference.resume`: claiming an output, and reading what an earlier run of it
  left (checked against this run's identity) for ``--resume``.
* :mod:`steelfast.inference.decode`: the decode stage shared by every engine: images or paths
  in, grey arrays out, and the run's size rules (skip or resize other sizes).
* :mod:`steelfast.inference.records`: defect records (connected components with box, area and
  scores, found by the compiled core in the RLE pass) per image.
* :mod:`steelfast.inference.record_writer`: records to a JSON Lines or COCO file, atomically.
* :mod:`steelfast.inference.ray_engine`: the same submission on Ray Data (``--engine ray``):
  actors that reuse :class:`~steelfast.inference.segmenter.Segmenter`, Ray imported only there.
* :mod:`steelfast.inference.lock`: the lock file that keeps one writer per output.
* :mod:`steelfast.inference.errors`: the errors of a run that are neither bad values nor bad
  paths (a busy output, a resume that does not match, a backend that cannot run here).
"""

from __future__ import annotations

__all__: list[str] = []
