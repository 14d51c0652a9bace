"""Fuzzing the public rle, metrics, labels and records functions with random and adversarial inputs.

Every call must return or raise ValueError/TypeError (RLEError and LabelError are ValueErrors): no crash, no other
exception. A valid input must give the NumPy oracles' result (tests/oracles.py, and the format's rules written out in
``strict_runs``); an invalid one must be refused. Reproducible and resizable from the environment:

    STEELFAST_FUZZ_SEED=7 STEELFAST_FUZZ_ITERS=100000 pytest tests/test_fuzz_public.py

STEELFAST_FUZZ_SEED (default 0) seeds the run; STEELFAST_FUZZ_ITERS (default 3000) is the number of fuzzed calls,
shared by the families below. Call i of a family draws from ``np.random.default_rng([seed, family, i])``, and a
failure names the family, the seed, the call number and the input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from oracles import components_reference, dice_reference, mask2rle, rle2mask

from steelfast import labels, metrics, rle
from steelfast.inference.records import encode_records

SEED = int(os.environ.get("STEELFAST_FUZZ_SEED", "0"))
ITERS = int(os.environ.get("STEELFAST_FUZZ_ITERS", "3000"))
MAX_INT64 = 2**63 - 1

_SEPARATOR = re.compile(r"[ \t\n\r\v\f]+")  # the core's whitespace; Python's str.split() knows more
_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only


def strict_runs(text: Any, total: int) -> tuple[list[int], list[int]] | None:
    """(0-based starts, lengths) of RLE text by the format's rules (rle module docstring), None if invalid."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return [], []
    if not isinstance(text, str):
        return None
    tokens = [t for t in _SEPARATOR.split(text) if t]
    if len(tokens) % 2 or not all(_NUMBER.fullmatch(t) for t in tokens):
        return None
    values = [int(t) for t in tokens]
    starts, lengths, end = [], [], 0
    for start, length in zip(values[::2], values[1::2]):
        if start > MAX_INT64 or length > MAX_INT64 or start < 1 or length < 1 or start + length - 1 > total:
            return None
        if start <= end:
            return None
        starts.append(start - 1)
        lengths.append(length)
        end = start + length - 1
    return starts, lengths


def oracle_mask(text: Any, shape: tuple[int, int], order: str = "F") -> np.ndarray:
    starts, lengths = strict_runs(text, shape[0] * shape[1])
    canonical = " ".join(f"{s + 1} {n}" for s, n in zip(starts, lengths))
    return rle2mask(canonical, shape) if order == "F" else rle2mask(canonical, shape[::-1]).T


def outcome(valid: bool | None, what: str, call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """Run ``call``: ValueError/TypeError only for invalid input (None: either is fine); other exceptions propagate."""
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        if valid:
            raise AssertionError(f"{what}: valid input refused: {type(exc).__name__}: {exc}") from exc
        return None, exc
    if valid is False:
        raise AssertionError(f"{what}: invalid input accepted, returned {result!r:.300}")
    return result, None


# ---- input generators ---------------------------------------------------------------------------

BAD_TOKENS = ["-1", "0", "+3", "3.0", "1e3", "0x1", "٣", "３", "9" * 19, "9" * 25, str(MAX_INT64), str(2**63),
              str(2**64), "0" * 25 + "1", "\x00", "é" * 13, "a" + "€" * 9, "😀" * 7, "\ud800", "\udfff1", "1,"]
BAD_SEPARATORS = ["\xa0", "\u3000", "\x1c", "\u2028", ",", ";", "\x00", "  \t\n"]
SMALL_SHAPE_LIMIT = 12
BIG_SHAPES = [(2**31, 2**31), (1, MAX_INT64), (3037000499, 3037000499), (2**62, 1)]
BAD_SHAPES = [(0, 4), (4, -1), (2**40, 2**40), (2**32, 2**32), (2**63, 1), (1.5, 4), (float("nan"), 4),
              (float("inf"), 4), "ab", None, 4, (4,), (4, 4, 4), ("4", "4")]
BAD_THREADS = [0, -1, 2**31, 2**64, 1.5, "2", True, np.uint64(2**63)]
BAD_ORDERS = ["K", None, "f", 1]


def small_shape(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(1, SMALL_SHAPE_LIMIT + 1)), int(rng.integers(1, SMALL_SHAPE_LIMIT + 1))


def valid_text(rng: np.random.Generator, total: int) -> str:
    count = int(rng.integers(0, min(5, (total + 1) // 2) + 1))
    if total < 10**6:
        points = sorted(int(v) for v in rng.choice(total + 1, 2 * count, replace=False))
    else:  # distinct points of a huge range: drop repeats, keep an even number
        points = sorted({int(v) for v in rng.integers(0, total, 2 * count, endpoint=True)})
        points = points[: len(points) // 2 * 2]
    runs = [(int(a) + 1, int(b) - int(a)) for a, b in zip(points[0::2], points[1::2])]
    tokens = [str(v) for run in runs for v in run]
    if rng.random() < 0.2 and tokens:  # leading zeros are still decimal integers
        k = int(rng.integers(len(tokens)))
        tokens[k] = "0" * int(rng.integers(1, 25)) + tokens[k]
    if rng.random() < 0.7:
        return " ".join(tokens)
    seps = [" " * int(rng.integers(1, 3)) + "".join(rng.choice(list("\t\n\r\v\f"), int(rng.integers(0, 3))))
            for _ in tokens]
    return "".join(t + s for t, s in zip(tokens, seps)) if tokens else " \t\n"


def adversarial_text(rng: np.random.Generator, total: int) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return [None, float("nan"), "", 5, 1.5, b"1 1", ["1", "1"]][int(rng.integers(7))]
    tokens = valid_text(rng, total).split() or ["1", "1"]
    for _ in range(int(rng.integers(1, 4))):
        tokens = tokens or ["1"]
        kind, k = int(rng.integers(7)), int(rng.integers(len(tokens)))
        if kind == 0:
            tokens[k] = BAD_TOKENS[int(rng.integers(len(BAD_TOKENS)))]
        elif kind == 1:
            tokens.pop(k)
        elif kind == 2 and len(tokens) >= 2:  # a pair again: overlap, or starts that do not increase
            tokens += tokens[k - k % 2 : k - k % 2 + 2]
        elif kind == 3:
            tokens[k] = str(int(rng.choice([0, 1, total, total + 1, total - 1, MAX_INT64, MAX_INT64 - 1])))
        elif kind == 4:
            tokens[k] += BAD_SEPARATORS[int(rng.integers(len(BAD_SEPARATORS)))] + tokens[k]
        elif kind == 5:
            tokens[k - k % 2] = str(2**62 + int(rng.integers(3)))
        else:
            tokens[k] = "".join(chr(int(c)) for c in rng.integers(32, 0x3000, int(rng.integers(1, 6))))
    return " ".join(tokens)


def any_text(rng: np.random.Generator, total: int) -> Any:
    return valid_text(rng, total) if rng.random() < 0.5 else adversarial_text(rng, total)


def pick_shape(rng: np.random.Generator, big_ok: bool) -> tuple[Any, bool]:
    roll = rng.random()
    if roll < 0.08:
        return BAD_SHAPES[int(rng.integers(len(BAD_SHAPES)))], False
    if big_ok and roll < 0.2:
        return BIG_SHAPES[int(rng.integers(len(BIG_SHAPES)))], True
    return small_shape(rng), True


def pick(rng: np.random.Generator, good: list, bad: list, bad_rate: float = 0.05) -> tuple[Any, bool]:
    if rng.random() < bad_rate:
        return bad[int(rng.integers(len(bad)))], False
    return good[int(rng.integers(len(good)))], True


def random_mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Bool or integer mask in a random memory layout: C, F, strided, reversed or misaligned."""
    dtype = np.dtype(rng.choice(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]))
    values = rng.random(shape) < rng.random()
    mask = values.astype(dtype)
    if dtype.kind in "iu" and rng.random() < 0.3:  # any nonzero value is a defect
        info = np.iinfo(dtype)
        mask = np.where(values, dtype.type(info.max if rng.random() < 0.5 else info.min or 1), dtype.type(0))
    layout = int(rng.integers(5))
    if layout == 1:
        mask = np.asfortranarray(mask)
    elif layout == 2:
        big = np.zeros(tuple(2 * s for s in shape), dtype)
        big[tuple(slice(None, None, 2) for _ in shape)] = mask
        mask = big[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == 3 and mask.ndim:
        mask = np.ascontiguousarray(mask[..., ::-1])[..., ::-1]
    elif layout == 4:  # an address that is not a multiple of the itemsize
        raw = np.frombuffer(bytearray(mask.nbytes + 1), np.uint8)[1:]
        moved = raw.view(dtype).reshape(shape)
        moved[...] = mask
        mask = moved
    return mask


# ---- families: each draws one input, calls one public function and checks it ---------------------


def fuzz_rle_text(rng: np.random.Generator) -> None:
    shape, shape_ok = pick_shape(rng, big_ok=True)
    big = shape_ok and shape[0] * shape[1] > 4096
    total = shape[0] * shape[1] if shape_ok else 20
    text = any_text(rng, total)
    text_ok = strict_runs(text, total) is not None
    threads, threads_ok = pick(rng, [None, 1, 2, 3, np.int64(2)], BAD_THREADS)
    order, order_ok = pick(rng, ["F", "C"], BAD_ORDERS)
    ops = ["area", "area_batch", "runs", "dice_rle", "dice_rle_batch", "to_coco", "decode", "decode_batch"]
    ops = ops[:6] if big else ops  # no masks of 2**62 pixels
    op = ops[int(rng.integers(len(ops)))]
    what = f"{op}({text!r:.200}, shape={shape!r}, threads={threads!r}, order={order!r})"
    ok = shape_ok and text_ok
    if op == "decode":
        result, _ = outcome(ok and order_ok, what, lambda: rle.decode(text, shape, order))
        if result is not None:
            np.testing.assert_array_equal(result, oracle_mask(text, shape, order), err_msg=what)
    elif op == "decode_batch":
        other = valid_text(rng, total)
        result, _ = outcome(ok and order_ok and threads_ok, what,
                            lambda: rle.decode_batch([other, text, None], shape, threads, order))
        if result is not None:
            expected = [oracle_mask(t, shape, order) for t in (other, text, None)]
            np.testing.assert_array_equal(result, np.stack(expected), err_msg=what)
    elif op in ("area", "area_batch", "runs"):
        call = {"area": lambda: rle.area(text, shape), "runs": lambda: rle.runs(text, shape),
                "area_batch": lambda: rle.area_batch([text, text], shape, threads)}[op]
        result, _ = outcome(ok and (threads_ok or op != "area_batch"), what, call)
        if result is not None:
            starts, lengths = strict_runs(text, total)
            if op == "runs":
                assert result[0].tolist() == starts and result[1].tolist() == lengths, what
                assert result[0].dtype == result[1].dtype == np.int64, what
            else:
                assert np.asarray(result).tolist() == ([sum(lengths)] * 2 if op == "area_batch" else sum(lengths)), what
    elif op in ("dice_rle", "dice_rle_batch"):
        other = valid_text(rng, total)
        a, b = (text, other) if rng.random() < 0.5 else (other, text)
        call = (lambda: metrics.dice_rle(a, b, shape)) if op == "dice_rle" else (
            lambda: metrics.dice_rle_batch([other, a], [other, b], shape, threads))
        result, error = outcome(ok and (threads_ok or op == "dice_rle"), what, call)
        if result is not None and not big:
            expected = dice_reference(oracle_mask(a, shape), oracle_mask(b, shape))
            got = result if op == "dice_rle" else result[1]
            assert got == pytest.approx(expected, rel=1e-12), what
        if error is not None and shape_ok and threads_ok and not text_ok:  # the message names the bad side
            side = "a" if text is a else "b"
            assert str(error).startswith(side if op == "dice_rle" else f"{side}[1]"), f"{what}: {error}"
    else:  # to_coco, then back
        result, _ = outcome(ok, what, lambda: rle.to_coco(text, shape))
        if result is not None:
            counts = result["counts"]
            assert result["size"] == list(shape) and sum(counts) == total and min(counts) >= 0, what
            assert counts[-1] > 0, what  # a 0 in between is fine: runs that touch, which the format allows
            back = rle.from_coco(result)
            starts, lengths = strict_runs(back, total)
            assert starts == sorted(set(starts)) and sum(lengths) == sum(strict_runs(text, total)[1]), what
            if not big:
                assert back == mask2rle(oracle_mask(text, shape)), what


def fuzz_encode(rng: np.random.Generator) -> None:
    order, order_ok = pick(rng, ["F", "C"], BAD_ORDERS)
    roll = rng.random()
    if roll < 0.06:
        bad = [np.zeros((3, 4), np.float32), np.zeros((3, 4), complex), np.array([["a"]]), np.zeros(4, np.uint8),
               np.zeros((1, 1, 1, 1, 1), np.uint8), "mask", None][int(rng.integers(7))]
        outcome(False, f"encode({bad!r:.100})", lambda: rle.encode(bad, order))
        return
    if roll < 0.55:
        mask = random_mask(rng, (int(rng.integers(0, 10)), int(rng.integers(0, 10))))
        result, _ = outcome(order_ok, f"encode({mask!r}, order={order!r})", lambda: rle.encode(mask, order))
        if result is not None:
            assert result == mask2rle(mask if order == "F" else mask.T), f"encode({mask!r}, {order})"
        return
    lead = tuple(int(v) for v in rng.integers(0, 4, int(rng.integers(1, 3))))
    masks = random_mask(rng, lead + (int(rng.integers(1, 9)), int(rng.integers(1, 9))))
    threads, threads_ok = pick(rng, [None, 1, 2, 3], BAD_THREADS)
    what = f"encode_batch({masks!r}, threads={threads!r}, order={order!r})"
    result, _ = outcome(order_ok and threads_ok, what, lambda: rle.encode_batch(masks, threads, order))
    if result is not None:
        flat = [mask2rle(m if order == "F" else m.T) for m in masks.reshape(-1, *masks.shape[-2:])]
        expected = flat if masks.ndim == 3 else [flat[i * lead[1] : (i + 1) * lead[1]] for i in range(lead[0])]
        assert result == expected, what


def fuzz_dice(rng: np.random.Generator) -> None:
    shape = tuple(int(v) for v in rng.integers(0, 4, int(rng.integers(0, 3)))) + small_shape(rng)
    pred, truth = random_mask(rng, shape), random_mask(rng, shape)
    valid = True
    if rng.random() < 0.06:
        truth, valid = [truth[..., :-1], truth.astype(np.float64), truth.ravel()][int(rng.integers(3))], False
    if pred.ndim == 2:
        result, _ = outcome(valid, f"dice({pred!r}, {truth!r})", lambda: metrics.dice(pred, truth))
        if result is not None:
            assert result == pytest.approx(dice_reference(pred, truth), rel=1e-12)
        return
    threads, threads_ok = pick(rng, [None, 1, 2], BAD_THREADS)
    result, _ = outcome(valid and threads_ok, f"dice_batch({pred!r}, {truth!r}, {threads!r})",
                        lambda: metrics.dice_batch(pred, truth, threads))
    if result is not None:
        pairs = zip(pred.reshape(-1, *shape[-2:]), truth.reshape(-1, *shape[-2:]))
        expected = [dice_reference(p, t) for p, t in pairs]
        assert result.shape == shape[:-2] and result.ravel().tolist() == pytest.approx(expected, rel=1e-12)


def fuzz_encode_probs(rng: np.random.Generator) -> None:
    n, c = int(rng.integers(0, 3)), int(rng.integers(1, 4))
    dtype = np.float32 if rng.random() < 0.5 else np.float16
    edge = float(rng.random())  # a threshold that also occurs among the probabilities
    levels = np.array([0.0, -0.0, 0.25, 0.5, 0.1, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, edge])
    size = (n, c) + small_shape(rng)
    probs = np.where(rng.random(size) < 0.3, rng.choice(levels, size), rng.random(size)).astype(dtype)
    if rng.random() < 0.3:  # channels-last strides
        probs = np.ascontiguousarray(probs.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    thresholds, t_ok = pick(rng, [0.5, 0.0, 1.0, 0.1, edge, [float(v) for v in rng.random(c)]],
                            [-0.1, 1.5, float("nan"), [0.5] * (c + 1), "x", 10**400], 0.08)
    min_areas, m_ok = pick(rng, [0, 1, 3, int(rng.integers(0, 50)), [int(v) for v in rng.integers(0, 9, c)], 2**62],
                           [-1, 1.5, 2**63, 2**70, float("inf"), float("nan"), [0] * (c + 1), "x"], 0.08)
    threads, threads_ok = pick(rng, [None, 1, 2], BAD_THREADS)
    what = f"encode_probs({probs!r}, {thresholds!r}, {min_areas!r}, {threads!r})"
    call = lambda: rle.encode_probs(probs, thresholds, min_areas, threads)  # noqa: E731
    result, _ = outcome(t_ok and m_ok and threads_ok, what, call)
    if result is None:
        return
    t = np.broadcast_to(np.asarray(thresholds, np.float64), (c,))
    m = np.broadcast_to(np.asarray(min_areas, np.float64), (c,))
    expected = []
    for image in probs:
        row = []
        for k in range(c):  # float32 compares with the float32 threshold; float16 exactly (steelfast.rle)
            mask = image[k] > np.float32(t[k]) if dtype == np.float32 else image[k].astype(np.float64) > t[k]
            row.append("" if mask.sum() < m[k] else mask2rle(mask))
        expected.append(row)
    assert result == expected, what


def fuzz_encode_records(rng: np.random.Generator) -> None:
    """encode_records on random probabilities (NaN, infinities, negatives, the threshold itself, float16, channels-last)
    and bad arguments: the same texts as encode_probs, and OpenCV's components."""
    n, c = int(rng.integers(0, 3)), int(rng.integers(1, 4))
    dtype = np.float32 if rng.random() < 0.5 else np.float16
    edge = float(rng.random())
    levels = np.array([0.0, -0.0, 0.25, 0.5, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, edge])
    size = (n, c) + small_shape(rng)
    probs = np.where(rng.random(size) < 0.3, rng.choice(levels, size), rng.random(size)).astype(dtype)
    if rng.random() < 0.3:
        probs = np.ascontiguousarray(probs.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    thresholds, t_ok = pick(rng, [0.5, 0.0, edge, [float(v) for v in rng.random(c)]], [-0.1, float("nan"), "x"], 0.08)
    min_areas, m_ok = pick(rng, [0, 2, [int(v) for v in rng.integers(0, 9, c)]], [-1, 1.5, [0] * (c + 1)], 0.08)
    threads, threads_ok = pick(rng, [None, 1, 2], BAD_THREADS)
    what = f"encode_records({probs!r}, {thresholds!r}, {min_areas!r}, {threads!r})"
    result, _ = outcome(t_ok and m_ok and threads_ok, what,
                        lambda: encode_records(probs, thresholds, min_areas, threads))
    if result is None:
        return
    assert [list(r.rles) for r in result] == rle.encode_probs(probs, thresholds, min_areas, threads), what
    t = np.broadcast_to(np.asarray(thresholds, np.float64), (c,))
    for image, record in zip(probs, result):
        for k in range(c):
            mask = image[k] > np.float32(t[k]) if dtype == np.float32 else image[k].astype(np.float64) > t[k]
            got = [d for d in record.defects if d.class_id == k + 1]
            expected = components_reference(mask, image[k]) if record.rles[k] else []
            assert [(d.bbox, d.area) for d in got] == [(e["bbox"], e["area"]) for e in expected], what
            for d, e in zip(got, expected):
                np.testing.assert_array_equal(rle2mask(d.rle, mask.shape), e["mask"], err_msg=what)
                assert d.score_max == e["max"] and d.score_mean == pytest.approx(e["mean"], rel=1e-6), what


def fuzz_coco(rng: np.random.Generator) -> None:
    shape = small_shape(rng)
    total = shape[0] * shape[1]
    bounds = np.sort(rng.integers(0, total, int(rng.integers(0, 8)), endpoint=True))
    counts: Any = np.diff(np.concatenate(([0], bounds, [total]))).tolist()
    valid = True
    roll = rng.random()
    if roll < 0.3:
        k = int(rng.integers(len(counts)))
        bad = [counts[k] + 0.5, float(counts[k]), True, -counts[k] - 1, 2**63, 2**64 + counts[k], str(counts[k]), [1]]
        counts[k], valid = bad[int(rng.integers(len(bad)))], False
    elif roll < 0.4:
        counts, valid = counts + [1], False
    elif roll < 0.5:
        dtype = str(rng.choice(["int32", "uint64", "float64", "bool"]))
        counts, valid = np.array(counts, dtype), dtype in ("int32", "uint64")
    elif roll < 0.6:
        counts, valid = bytes(rng.integers(40, 120, int(rng.integers(0, 12))).astype(np.uint8)), None
    obj = {"size": list(shape), "counts": counts}
    result, _ = outcome(valid, f"from_coco({obj!r:.300})", lambda: rle.from_coco(obj))
    if result is None:
        return
    assert strict_runs(result, total) is not None, f"from_coco({obj!r:.300}) gave invalid RLE {result!r}"
    if valid:
        flat = np.repeat(np.arange(len(counts)) % 2, [int(v) for v in counts]).astype(np.uint8)
        assert result == mask2rle(flat.reshape(shape[1], shape[0]).T), f"from_coco({obj!r:.300})"
    assert rle.from_coco(rle.to_coco(result, shape)) == result


IDS = ["a.jpg", "0002cc93b.jpg", "=HYPERLINK(1).jpg", "+1.jpg", "-x.jpg", "@a.jpg", "\ta.jpg", " a b .jpg", "é ü.jpg",
       "a,b.jpg", 'q"uote.jpg', "a\nb.jpg", "a\rb.jpg", "a_1.jpg", "nan", "NULL", "x" * 300, "#a"]


def fuzz_labels(rng: np.random.Generator, tmp: Any) -> None:
    shape = small_shape(rng)
    total = shape[0] * shape[1]
    images = list(rng.choice(IDS, int(rng.integers(1, 5)), replace=False))
    rows = [(str(i), int(k), valid_text(rng, total)) for i in images for k in range(1, 5) if rng.random() < 0.6]
    frame = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    valid, mutation = True, int(rng.integers(13)) if rows else 0  # 9 and up: none
    if mutation == 1:
        frame.loc[int(rng.integers(len(frame))), "ImageId"], valid = ["", "  ", None][int(rng.integers(3))], False
    elif mutation == 2:
        frame["ClassId"] = frame["ClassId"].astype(object)
        frame.loc[int(rng.integers(len(frame))), "ClassId"] = ["0", "5", "x", "", -1][int(rng.integers(5))]
        valid = False
    elif mutation == 3:
        frame, valid = pd.concat([frame, frame.iloc[[int(rng.integers(len(frame)))]]], ignore_index=True), False
    elif mutation == 4:
        text = adversarial_text(rng, total)
        text = text if isinstance(text, str) and not re.search("[\ud800-\udfff]", text) else "x 1"  # pandas' str
        frame.loc[int(rng.integers(len(frame))), "EncodedPixels"] = text
        valid = all(strict_runs(t, total) is not None for t in frame["EncodedPixels"])
    elif mutation == 5:
        frame, valid = frame.assign(ImageId_ClassId="x.jpg_1"), False
    elif mutation == 6:
        frame, valid = frame.drop(columns=str(rng.choice(["ImageId", "ClassId", "EncodedPixels"]))), False
    source: Any = frame
    if (rng.random() < 0.5 or mutation >= 7) and mutation != 1:  # a file; an extra field on a line; random bytes
        path = tmp / "labels.csv"
        if mutation not in (2, 5, 6):  # our writer, either format; or pandas' for tables it would refuse
            labels.write_submission(frame, path, style=str(rng.choice(["new", "old"])))
        else:
            frame.to_csv(path, index=False)
        lines = path.read_bytes().split(b"\n")  # the header, the rows, and b"" after the last newline
        if mutation == 7 and len(lines) > 2:
            k = int(rng.integers(1, len(lines) - 1))
            lines[k] += b",extra"
            path.write_bytes(b"\n".join(lines))
            valid = None if any("\n" in i or "\r" in i or '"' in i or "," in i for i in images) else False
        if mutation == 8:
            path.write_bytes(rng.bytes(int(rng.integers(0, 200))))
            valid = None
        source = path
    what = f"read_labels(rows={rows!r:.400}, mutation={mutation}, source={type(source).__name__})"
    table, _ = outcome(valid, what, lambda: labels.read_labels(source, shape=shape))
    if table is None:
        return
    assert list(table.columns) == ["ImageId", "ClassId", "EncodedPixels", "hasMask"]
    assert table["ClassId"].isin([1, 2, 3, 4]).all() and not table.duplicated(["ImageId", "ClassId"]).any()
    assert (table["hasMask"] == (table["EncodedPixels"] != "")).all()
    assert all(strict_runs(t, total) is not None for t in table["EncodedPixels"])
    if valid:
        expected = sorted(zip(frame["ImageId"], frame["ClassId"].astype(int), frame["EncodedPixels"]))
        assert list(zip(table["ImageId"], table["ClassId"], table["EncodedPixels"])) == expected, what
        kind = str(rng.choice(["csv", "csv", "csv", "xlsx", "parquet"])) if rng.random() < 0.1 else "csv"
        cells = [*images, *table["EncodedPixels"]]
        xlsx_ok = not any(re.search("[\x00-\x08\x0b-\x1f]", v) for v in cells)
        target = tmp / f"out.{kind}"
        written, _ = outcome(xlsx_ok or kind != "xlsx", f"write_submission, {kind}: {what}",
                             lambda: labels.write_submission(table, target, style=str(rng.choice(["new", "old"]))))
        if written is None:
            return
        read = {"csv": lambda p: p, "xlsx": lambda p: pd.read_excel(p, dtype=str, keep_default_na=False),
                "parquet": pd.read_parquet}[kind]
        back = labels.read_labels(read(written), shape=shape)
        pd.testing.assert_frame_equal(back, table)


# Shares of STEELFAST_FUZZ_ITERS; pandas makes a labels call some 50 times slower than the others.
FAMILIES = {"rle_text": (fuzz_rle_text, 0.4), "encode": (fuzz_encode, 0.15), "dice": (fuzz_dice, 0.1),
            "encode_probs": (fuzz_encode_probs, 0.1), "encode_records": (fuzz_encode_records, 0.1),
            "coco": (fuzz_coco, 0.2), "labels": (fuzz_labels, 0.05)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_public_api(family: str, tmp_path) -> None:
    fuzz, share = FAMILIES[family]
    index = list(FAMILIES).index(family)
    if family == "labels":
        pytest.importorskip("openpyxl")
        pytest.importorskip("pyarrow")
    for i in range(max(1, round(ITERS * share))):
        rng = np.random.default_rng([SEED, index, i])
        try:
            if family == "labels":
                fuzz(rng, tmp_path)
            else:
                fuzz(rng)
        except Exception as exc:
            raise AssertionError(
                f"fuzz family {family!r}, call {i}, STEELFAST_FUZZ_SEED={SEED}: {type(exc).__name__}: {exc}"
            ) from exc
