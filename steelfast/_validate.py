"""Input validation shared by the public facades: one helper per kind of input.

Each helper accepts NumPy arrays, array-likes and (CPU or CUDA) torch tensors, checks ndim, shape and dtype once,
and raises ``TypeError``/``ValueError`` quoting what it received. It copies only when the compiled core cannot read
the memory as it is (strides that are not whole elements, a dtype the kernel lacks).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The largest pixel count, run start or area the compiled core holds (int64).
MAX_INT64 = 2**63 - 1
#: The largest thread count the compiled core takes (a C int).
MAX_THREADS = 2**31 - 1

__all__ = [
    "AMP",
    "MAX_INT64",
    "MAX_THREADS",
    "as_mask_array",
    "as_postprocess",
    "as_prob_array",
    "as_rle_text",
    "as_rle_texts",
    "as_shape",
    "as_threads",
    "check_amp",
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_positive_int",
    "check_prevalence",
    "check_weights",
    "per_class",
]


def _to_numpy(obj: Any) -> np.ndarray:
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch.Tensor without importing torch
        tensor = obj.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(obj)


def _whole_element_strides(array: np.ndarray) -> np.ndarray:
    if any(stride % array.itemsize for stride in array.strides):
        return np.ascontiguousarray(array)
    return array


def as_mask_array(obj: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """Return ``obj`` as a bool or integer array with one of ``ndims`` dimensions (nonzero = defect).

    Raises:
        TypeError: for a non-numeric, float or complex dtype.
        ValueError: for a wrong number of dimensions.
    """
    array = _to_numpy(obj)
    if array.dtype.kind not in "biu":
        raise TypeError(
            f"{name} must be a bool or integer mask (nonzero = defect), got dtype {array.dtype}; "
            "threshold probabilities first (e.g. probs > 0.5) or use encode_probs"
        )
    if array.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {want}, got shape {array.shape}")
    return _whole_element_strides(array)


def as_prob_array(obj: Any, name: str = "probs") -> np.ndarray:
    """Return ``obj`` as a float32 or float16 array of shape (N, C, H, W)."""
    array = _to_numpy(obj)
    if array.dtype not in (np.float32, np.float16):
        raise TypeError(
            f"{name} must be float32 or float16 probabilities, got dtype {array.dtype}; "
            f"convert with {name}.astype(np.float32)"
        )
    if array.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {array.shape}")
    return _whole_element_strides(array)


def as_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    """Return ``shape`` as ``(height, width)`` of positive ints whose product fits an int64."""
    try:
        height, width = (int(v) for v in shape)
        ok = all(int(v) == v for v in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (height, width), got {shape!r}") from None
    except OverflowError:  # int(inf)
        height, width, ok = 0, 0, False
    if not ok or height < 1 or width < 1:
        raise ValueError(f"{name} must be two positive integers (height, width), got {shape!r}")
    if height * width > MAX_INT64:
        raise ValueError(f"{name} {shape!r} has {height * width} pixels, more than RLE numbers reach (2**63 - 1)")
    return height, width


def as_threads(threads: int | None) -> int:
    """Return the worker thread count for the core: 0 means one per hardware thread."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}] or None, got {threads!r}")
    return int(threads)


def as_rle_text(value: Any, name: str = "rle") -> str:
    """Return RLE text; ``None``, NaN and ``""`` mean an empty mask."""
    if value is None:
        return ""
    if isinstance(value, str):
        if not value.isascii():  # the core reads UTF-8; a lone surrogate has no UTF-8 form
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"{name} is not valid Unicode: a lone surrogate {value[exc.start]!r} at index {exc.start} "
                    f"of {value!r:.80}"
                ) from None
        return value
    if isinstance(value, float) and math.isnan(value):
        return ""
    raise TypeError(f"{name} must be a str (or None/NaN for an empty mask), got {type(value).__name__}: {value!r}")


def as_rle_texts(values: Any, name: str = "rles") -> list[str]:
    """Return a list of RLE texts from any iterable of str/None/NaN."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of RLE strings, got a single {type(values).__name__}")
    return [as_rle_text(v, f"{name}[{i}]") for i, v in enumerate(values)]


def per_class(value: Any, classes: int, name: str, kind: type) -> list:
    """Broadcast a scalar or check a per-class sequence of length ``classes``."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = list(np.asarray(value).ravel())
        if len(values) != classes:
            raise ValueError(f"{name} needs one value per class ({classes}), got {len(values)}: {value!r}")
    else:
        values = [value] * classes
    try:
        return [kind(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {value!r}") from None
    except OverflowError:  # float(10**400)
        raise ValueError(f"{name} has a value too large for a float: {value!r:.80}") from None


def as_postprocess(thresholds: Any, min_areas: Any, classes: int) -> tuple[list[float], list[int], list[int]]:
    """Per-class thresholds in [0, 1], minimum areas (non-negative ints below 2**63) and half-threshold bits.

    The bits are those of the largest float16 <= each threshold: then ``p > t`` is exactly ``p > that half`` for any
    float16 ``p``, which is how the compiled core thresholds float16 probabilities.

    Raises:
        ValueError: A threshold outside [0, 1] or NaN, a bad minimum area, or the wrong number of values.
        TypeError: Values that are not numbers.
    """
    limits = per_class(thresholds, classes, "thresholds", float)
    if any(not 0.0 <= t <= 1.0 for t in limits):
        raise ValueError(f"thresholds must lie in [0, 1], got {thresholds!r}")
    minimum = per_class(min_areas, classes, "min_areas", float)
    if any(not 0 <= m < 2.0**63 or m != int(m) for m in minimum):  # NaN and inf fail the range test
        raise ValueError(f"min_areas must be non-negative integers below 2**63, got {min_areas!r}")
    halves = np.array(limits, dtype=np.float16)
    above = halves.astype(np.float64) > np.array(limits, dtype=np.float64)
    halves[above] = np.nextafter(halves[above], np.float16(0))
    return limits, [int(m) for m in minimum], [int(b) for b in halves.view(np.uint16)]


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (Python or NumPy, not a bool) in [low, high].

    Raises:
        TypeError: ``value`` is not an integer (bools are refused), quoting it.
        ValueError: ``value`` is below ``low`` or above ``high``, quoting it.
    """
    if low is not None and high is not None:
        want = f"an int in {low}..{high}"
    elif low is not None:
        want = f"an int >= {low}"
    elif high is not None:
        want = f"an int <= {high}"
    else:
        want = "an int"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {want}, got {type(value).__name__}: {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is an integer >= 1 (not a bool), else raise.

    Raises:
        TypeError: ``value`` is not an integer (bools are refused), quoting it.
        ValueError: ``value`` < 1, quoting it.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` as a float if it is a real number in [low, high], else raise.

    Raises:
        TypeError: ``value`` is not a real number (bools are refused), quoting it.
        ValueError: ``value`` is NaN or outside [low, high], quoting it.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {type(value).__name__}: {value!r}")
    if not (low <= float(value) <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


#: The trainers' autocast settings (``amp``), :func:`steelfast._device.autocast_dtype`'s choices.
AMP = ("auto", "bf16", "fp16", "off")


def check_amp(value: Any) -> str:
    """Return ``value`` if it is one of :data:`AMP`, else raise ValueError quoting it."""
    if value not in AMP:
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices``, else raise.

    Raises:
        ValueError: ``value`` is not one of ``choices`` (any type), quoting it and the choices.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (NumPy's included), else raise.

    Raises:
        TypeError: ``value`` is not a bool (``0`` and ``1`` are refused too), quoting it.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return bool(value)


def check_weights(weights: Any, n: int, name: str = "weights") -> np.ndarray:
    """Return ``n`` sampling weights as float64 normalised to sum 1.

    Raises:
        ValueError: not ``n`` finite, non-negative numbers with a positive sum.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(
            f"{name} must be {n} finite non-negative numbers with a positive sum, got shape {w.shape}"
        )
    return w / w.sum()


def _flat(values: Sequence | np.ndarray) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 1
    return not any(isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str) for v in values)


def check_prevalence(values: Any, classes: int) -> tuple[float, ...]:
    """Per-class shares of images holding each class: ``classes`` numbers strictly between 0 and 1.

    Accepts a flat sequence of real numbers, a comma-separated string (as typed on a command line),
    or None for the Kaggle train set's :data:`steelfast.severstal.PREVALENCE`.

    Raises:
        TypeError: Not a flat sequence or a string, or a sequence holding something other than
            real numbers (bools are refused), quoting it.
        ValueError: Text that does not parse as numbers, the wrong number of values, or a value
            outside (0, 1) or NaN, quoting it.
    """
    if values is None:
        from steelfast.severstal import PREVALENCE

        shares = list(PREVALENCE)
    elif isinstance(values, str):
        try:
            shares = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"prevalence must be {classes} comma-separated numbers, got {values!r}") from None
    elif isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, bytes) and _flat(values):
        items = list(values)
        if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) for v in items):
            raise TypeError(f"prevalence must be real numbers, got {values!r}")
        shares = [float(v) for v in items]
    else:
        raise TypeError(f"prevalence must be a flat sequence of {classes} numbers, got {type(values).__name__}: "
                        f"{values!r}")
    if len(shares) != classes:
        raise ValueError(f"prevalence needs one share per class ({classes}), got {len(shares)}: {values!r}")
    if not all(0.0 < v < 1.0 for v in shares):  # NaN fails too
        raise ValueError(f"prevalence shares must lie strictly between 0 and 1, got {values!r}")
    return tuple(shares)
