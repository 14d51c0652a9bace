"""The model metadata that travels with every checkpoint and ONNX file: a dict in, checked or JSON out.

The metadata is one JSON object with these keys:

- ``"format"``: :data:`CHECKPOINT_FORMAT`;
- ``"steelfast_version"``: the version that wrote it;
- ``"architecture"``: the :attr:`steelfast.models.UNet.config` dict that rebuilds the model;
- ``"classes"``: class ids in channel order, ``[1, 2, 3, 4]``;
- ``"input"``: ``{"height", "width", "channels"}`` the model was trained/validated at (and
  ``"multiple"``, the number height and width are padded to);
- ``"normalization"``: ``{"mean", "std"}`` in 0..1 units (``(x/255 − mean)/std``);
- ``"postprocess"``: ``{"thresholds": [4 floats], "min_areas": [4 ints]}`` used by inference,
  optionally ``"tta": true`` when they were tuned on flip-averaged probabilities (inference then
  averages flips by default);
- ``"training"``: free-form summary (data, epochs, scores, ...);
- ``"weights_sha256"``: hash of the weights file, checked on load so that a weights file and a
  metadata file from different saves are never paired silently.

:func:`validate_metadata` checks it wherever it is read (a checkpoint's ``.json`` by
:mod:`steelfast.checkpoint`, the copy embedded in an ONNX file by
:mod:`steelfast.inference.export`); :func:`merge_metadata` and :func:`metadata_to_json` are how
:func:`steelfast.checkpoint.save_checkpoint` builds and writes it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "merge_metadata", "metadata_to_json", "validate_metadata"]

CHECKPOINT_FORMAT = "steelfast-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, unsafe, or does not match its metadata."""


def merge_metadata(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, nested dicts key by key (``"architecture"`` is replaced whole)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "architecture":
            out[key] = merge_metadata(out[key], value)
        else:
            out[key] = value
    return out


def _json_default(obj: object) -> object:
    # numpy scalars/arrays and Paths show up in training summaries.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _finite_or_none(obj: Any) -> Any:
    # Training summaries hold NaN for undefined means (a class with no defects in the validation
    # set); strict JSON has no NaN, so those become null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def metadata_to_json(meta: Mapping[str, Any]) -> str:
    """Strict JSON text of ``meta``: NaN and infinity become null, NumPy values lists, paths strings.

    Raises:
        TypeError: A value is not JSON-serialisable.
    """
    return json.dumps(_finite_or_none(meta), indent=2, sort_keys=False, default=_json_default, allow_nan=False)


def validate_metadata(meta: Mapping[str, Any], where: str) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` has the documented keys with sane values.

    Args:
        meta: Metadata as described in the module docstring (a checkpoint's JSON, or the copy
            embedded in an ONNX file).
        where: The file the metadata came from; every message starts with it.
    """
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{where}: unknown checkpoint format {meta.get('format')!r} "
            f"(expected {CHECKPOINT_FORMAT!r})"
        )
    for key in ("architecture", "classes", "input", "normalization", "postprocess"):
        if key not in meta:
            raise CheckpointError(f"{where}: metadata lacks the {key!r} key")
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes:
        raise CheckpointError(f"{where}: 'classes' must be a non-empty list, got {classes!r}")
    post = meta["postprocess"]
    if not isinstance(post, Mapping):
        raise CheckpointError(f"{where}: 'postprocess' must be an object, got {post!r}")
    thresholds, min_areas = post.get("thresholds"), post.get("min_areas")
    if not isinstance(thresholds, list) or len(thresholds) != len(classes):
        raise CheckpointError(
            f"{where}: postprocess thresholds must list {len(classes)} values, got {thresholds!r}"
        )
    if not all(isinstance(t, (int, float)) and 0.0 <= t < 1.0 for t in thresholds):
        raise CheckpointError(
            f"{where}: postprocess thresholds must be in [0, 1), got {thresholds!r}"
        )
    if not isinstance(min_areas, list) or len(min_areas) != len(classes):
        raise CheckpointError(
            f"{where}: postprocess min_areas must list {len(classes)} values, got {min_areas!r}"
        )
    if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in min_areas):
        raise CheckpointError(
            f"{where}: postprocess min_areas must be ints >= 0, got {min_areas!r}"
        )
    if not isinstance(post.get("tta", False), bool):
        raise CheckpointError(f"{where}: postprocess tta must be true or false, got {post['tta']!r}")
    norm = meta["normalization"]
    if (
        not isinstance(norm, Mapping)
        or not all(
            isinstance(norm.get(k), (int, float)) and math.isfinite(norm[k])
            for k in ("mean", "std")
        )
        or norm["std"] <= 0
    ):
        raise CheckpointError(f"{where}: normalization must be {{'mean', 'std' > 0}}, got {norm!r}")
    inp = meta["input"]
    if not isinstance(inp, Mapping) or not all(
        isinstance(inp.get(k), int) for k in ("height", "width", "channels")
    ):
        raise CheckpointError(
            f"{where}: input must be {{'height', 'width', 'channels'}} ints, got {inp!r}"
        )
