"""steelfast.rle against the NumPy oracles: round trips, layouts, dtypes, batches, COCO, bad input, real data."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from helpers import random_mask
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracles import mask2rle, rle2mask

from steelfast import rle

SHAPES = [(1, 1), (1, 7), (7, 1), (3, 5), (16, 24), (256, 1600)]
DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]

small_masks = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.bool_, np.int32]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.integers(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(small_masks)
def test_encode_matches_oracle_and_round_trips(mask):
    text = rle.encode(mask)
    assert text == mask2rle(mask)
    np.testing.assert_array_equal(rle.decode(text, mask.shape), mask.astype(np.uint8))


@settings(max_examples=150, deadline=None)
@given(small_masks)
def test_row_major_order_equals_transposed_column_major(mask):
    text = rle.encode(mask, order="C")
    assert text == mask2rle(mask.T)
    np.testing.assert_array_equal(rle.decode(text, mask.shape, order="C"), mask.astype(np.uint8))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("coverage", [0.0, 0.01, 0.25, 1.0])
def test_encode_decode_shapes_and_coverage(rng, shape, coverage):
    mask = random_mask(rng, shape, coverage) if coverage < 1 else np.ones(shape, np.uint8)
    text = rle.encode(mask)
    assert text == mask2rle(mask)
    np.testing.assert_array_equal(rle.decode(text, shape), rle2mask(text, shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_integer_dtype_nonzero_is_defect(rng, dtype):
    mask = random_mask(rng, (32, 48), 0.2)
    values = (mask * rng.integers(1, 100, mask.shape)).astype(dtype)
    assert rle.encode(values) == mask2rle(mask)


@pytest.mark.parametrize(
    "layout",
    [
        lambda m: np.ascontiguousarray(m),
        lambda m: np.asfortranarray(m),
        lambda m: m[::2, ::3],
        lambda m: m[::-1, :],
        lambda m: m[:, ::-1],
        lambda m: np.ascontiguousarray(m.T).T,
        lambda m: np.ascontiguousarray(np.stack([m, m], -1))[..., 1],
    ],
    ids=["C", "F", "strided", "flipped-rows", "flipped-cols", "transposed", "interleaved"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_any_memory_layout(rng, layout, dtype):
    mask = layout(random_mask(rng, (64, 96), 0.15).astype(dtype))
    assert rle.encode(mask) == mask2rle(mask)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_flips_at_block_and_chunk_edges(order, dtype):
    # The scanner compares 64-byte blocks, 256 blocks per call: put runs that start or end on either side of
    # those edges, in pixel order (F) and in row order (C), for 1-, 2- and 8-byte elements.
    flat = np.zeros(256 * 1600, np.uint8)
    itemsize = np.dtype(dtype).itemsize
    for edge in (64 // itemsize, 16384 // itemsize, 3 * 16384 // itemsize, 1600):
        for k in (1, 5, 40):
            if (k + 3) * edge + 2 >= flat.size:
                continue
            flat[k * edge - 1 : k * edge + 1] = 1
            flat[k * edge + 2] = 1
            flat[(k + 1) * edge : (k + 1) * edge + 3 * edge // 2] = 1  # a long run from exactly an edge ...
            flat[(k + 3) * edge - 2 * edge : (k + 3) * edge] = 1  # ... and one ending exactly at an edge
    flat[-1] = 1
    mask = (flat.reshape(1600, 256).T if order == "F" else flat.reshape(256, 1600)).astype(dtype)
    mask = np.asfortranarray(mask) if order == "F" else np.ascontiguousarray(mask)
    assert rle.encode(mask) == mask2rle(mask)


run_lengths = st.one_of(
    st.integers(1, 8), st.sampled_from([63, 64, 65, 127, 128, 129, 191, 192, 193, 256]), st.integers(1, 700)
)


@settings(max_examples=200, deadline=None)
@given(
    height=st.sampled_from([64, 200, 256]),
    width=st.integers(1, 24),
    lengths=st.lists(run_lengths, min_size=1, max_size=40),
    starts_with_defect=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_long_uniform_stretches_in_pixel_order_match_oracle(height, width, lengths, starts_with_defect, seed):
    # The pixel-order scanner skips 128 bytes at a time that equal the byte before them (all zero, or all nonzero
    # with any values): runs of every length around those strides, defects of values 1-255, odd block counts.
    flat = np.zeros(height * width, np.uint8)
    position, defect = 0, starts_with_defect
    for length in lengths:
        if defect:
            flat[position : position + length] = 1
        position, defect = position + length, not defect
    flat *= np.random.default_rng(seed).integers(1, 256, flat.size, dtype=np.uint8)
    mask = flat.reshape(width, height).T  # Fortran-ordered: memory order is pixel order
    assert rle.encode(mask) == mask2rle(mask)
    assert rle.encode(np.ascontiguousarray(mask.T), order="C") == mask2rle(mask)


@pytest.mark.parametrize("boundary", [128, 256, 16384, 3 * 16384 + 128])
@pytest.mark.parametrize("defect_first", [True, False])
def test_uniform_stretches_ending_on_skip_and_chunk_boundaries(boundary, defect_first):
    # A stretch ending exactly where a 128-byte skip test (or a 16 KiB chunk) starts, followed by >= 128 bytes of
    # the other state, then a flip back: every skip decision of the pixel-order scanner meets both states.
    flat = np.zeros(256 * 256, np.uint8)
    first, second = (200, 0) if defect_first else (0, 200)
    flat[:boundary] = first
    flat[boundary : boundary + 300] = second
    flat[boundary + 300 :] = first
    mask = flat.reshape(256, 256).T
    assert rle.encode(mask) == mask2rle(mask)


def test_uint8_values_that_differ_but_are_both_defects():
    mask = np.zeros((128, 3), np.uint8)
    mask[:, 1] = np.arange(128) % 7 + 1  # every byte nonzero but differing from its neighbour
    assert rle.encode(mask) == "129 128"


def test_decode_empty_inputs():
    for value in ("", None, float("nan"), "   "):
        assert not rle.decode(value, (4, 5)).any()
    assert rle.decode("", (4, 5)).shape == (4, 5)
    assert rle.encode(np.zeros((4, 5), np.uint8)) == ""


def test_decode_layout_and_dtype():
    out = rle.decode("1 3", (2, 3))
    assert out.dtype == np.uint8 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(rle.decode("1 3", (2, 3), order="C"), [[1, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize("threads", [None, 1, 2, 5])
def test_batches_equal_singles(rng, threads):
    masks = np.stack([random_mask(rng, (32, 64), c) for c in (0, 0.01, 0.1, 0.3, 0.5, 0.05)])
    texts = rle.encode_batch(masks, threads=threads)
    assert texts == [mask2rle(m) for m in masks]
    np.testing.assert_array_equal(rle.decode_batch(texts, (32, 64), threads=threads), masks)
    by_class = rle.encode_batch(masks.reshape(2, 3, 32, 64), threads=threads)
    assert by_class == [texts[0:3], texts[3:6]]
    np.testing.assert_array_equal(rle.area_batch(texts, (32, 64), threads=threads), masks.sum(axis=(1, 2)))


@pytest.mark.parametrize("order", ["F", "C"])
def test_decode_batch_into_out_overwrites_it(rng, order):
    masks = np.stack([random_mask(rng, (16, 24), c) for c in (0.0, 0.1, 0.6)])
    texts = rle.encode_batch(masks, order=order)
    out = np.full_like(rle.decode_batch(texts, (16, 24), order=order), 7)  # same layout, stale contents
    result = rle.decode_batch(texts, (16, 24), order=order, out=out)
    assert result is out
    np.testing.assert_array_equal(out, masks)


def _mask_from_flips(total: int, flips: list[int]) -> np.ndarray:
    """Flat uint8 mask whose state flips at each position in ``flips`` (long runs, unlike per-pixel noise)."""
    steps = np.zeros(total + 1, np.int64)
    np.add.at(steps, np.asarray(flips, np.int64), 1)
    return (np.cumsum(steps)[:total] % 2).astype(np.uint8)


@st.composite
def stale_cases(draw):
    height, width, count = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(0, 4))
    total = height * width
    flats = [
        _mask_from_flips(total, draw(st.lists(st.integers(0, total), unique=True, max_size=12)))
        for _ in range(count)
    ]
    return height, width, flats, draw(st.sampled_from("FC")), draw(st.integers(0, 63))


@settings(max_examples=300, deadline=None)
@given(stale_cases())
def test_decode_into_stale_memory_at_any_alignment(case):
    # Every byte of `out` is written (0 or 1) whatever it held and wherever it starts; nothing around it is touched.
    height, width, flats, order, offset = case
    size = len(flats) * height * width
    numbering = (width, height) if order == "F" else (height, width)
    masks = np.stack([f.reshape(numbering) for f in flats]) if flats else np.zeros((0, *numbering), np.uint8)
    if order == "F":
        masks = masks.transpose(0, 2, 1)
    texts = rle.encode_batch(masks, order=order) if flats else []
    buffer = np.full(offset + size + 64, 0xAB, np.uint8)
    inner = buffer[offset : offset + size].reshape(len(flats), *numbering)
    out = inner.transpose(0, 2, 1) if order == "F" else inner
    assert rle.decode_batch(texts, (height, width), order=order, out=out) is out
    np.testing.assert_array_equal(out, masks)
    assert (buffer[:offset] == 0xAB).all() and (buffer[offset + size :] == 0xAB).all()


@pytest.mark.parametrize("order", ["F", "C"])
def test_reused_output_buffers_hold_no_stale_pixels(rng, order):
    # A previous result, scribbled on, passed back as out=: every byte is rewritten.
    masks = np.stack([random_mask(rng, (64, 96), c) for c in np.linspace(0, 0.6, 400)])
    texts = rle.encode_batch(masks, order=order)
    first = rle.decode_batch(texts, (64, 96), order=order)
    first[...] = 0xAB
    again = rle.decode_batch(texts[::-1], (64, 96), order=order, out=first)
    assert again is first
    np.testing.assert_array_equal(again, masks[::-1])


def test_fresh_outputs_are_new_arrays():
    first = rle.decode_batch(["1 5"] * 3, (4, 5))
    second = rle.decode_batch(["1 5"] * 3, (4, 5))
    assert not np.shares_memory(first, second)
    root = first if first.base is None else first.base
    assert isinstance(root, np.ndarray) and root.base is None  # numpy owns the memory: no foreign buffer behind it


def test_outputs_too_large_are_named():
    with pytest.raises(ValueError, match=r"2 masks of shape \(2147483648, 2147483648\) are 9223372036854775808 bytes"):
        rle.decode_batch(["1 5", ""], (2**31, 2**31))
    with pytest.raises(MemoryError, match=r"cannot allocate 4611686018427387904 bytes for 1 masks of shape"):
        rle.decode_batch(["1 5"], (2**31, 2**31))  # addressable, but beyond any machine's address space


def test_decode_batch_of_nothing_into_out():
    out = np.empty((0, 5, 4), np.uint8).transpose(0, 2, 1)
    assert rle.decode_batch([], (4, 5), out=out) is out


def test_batch_of_nothing():
    assert rle.encode_batch(np.zeros((0, 4, 5), np.uint8)) == []
    assert rle.decode_batch([], (4, 5)).shape == (0, 4, 5)


def test_torch_tensors_are_accepted(rng):
    torch = pytest.importorskip("torch")
    mask = random_mask(rng, (16, 32), 0.2)
    assert rle.encode(torch.from_numpy(mask).bool()) == mask2rle(mask)


def test_area_and_runs():
    assert rle.area("1 3 10 2", (4, 5)) == 5
    assert rle.area(None) == 0
    starts, lengths = rle.runs("1 3 10 2", (4, 5))
    assert starts.tolist() == [0, 9] and lengths.tolist() == [3, 2]
    starts, lengths = rle.runs("", (4, 5))  # empty runs: the binding must not memcpy from a null pointer
    assert starts.shape == lengths.shape == (0,) and starts.dtype == np.int64
    assert rle.to_coco("", (4, 5)) == {"size": [4, 5], "counts": [20]}


def test_kernels_release_the_gil_and_run_concurrently(rng):
    masks = np.stack([random_mask(rng, (256, 1600), 0.05) for _ in range(8)])
    expected = [mask2rle(m) for m in masks]
    results: dict[int, list[str]] = {}

    def work(k):
        results[k] = rle.encode_batch(masks, threads=1)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(results[k] == expected for k in range(4))


# ---- encode_probs -------------------------------------------------------------------------------


def _reference_probs(probs, thresholds, min_areas):
    out = []
    for image in probs:
        row = []
        for c, plane in enumerate(image):
            mask = plane.astype(np.float64) > thresholds[c]
            row.append(mask2rle(mask) if mask.sum() >= max(min_areas[c], 1) else "")
        out.append(row)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_encode_probs_matches_reference(rng, dtype, layout):
    probs = rng.random((3, 4, 32, 64)).astype(dtype) ** 3
    if layout == "nhwc":  # what a channels_last model returns
        probs = np.ascontiguousarray(probs.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    thresholds, min_areas = [0.5, 0.3, 0.7, 0.1], [0, 100, 50, 1500]
    assert rle.encode_probs(probs, thresholds, min_areas, threads=2) == _reference_probs(probs, thresholds, min_areas)


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3333, 0.5, 0.7001, 0.99, 1.0])
def test_encode_probs_half_threshold_is_exact(threshold):
    values = np.arange(0, 0x3C01, dtype=np.uint16).view(np.float16)  # every half in [0, 1]
    probs = np.resize(values, (1, 1, 32, values.size // 32 + 1)).astype(np.float16)
    expected = mask2rle(probs[0, 0].astype(np.float64) > threshold)
    assert rle.encode_probs(probs, threshold)[0][0] == expected
    assert rle.encode_probs(probs.astype(np.float32), threshold)[0][0] == expected


def test_encode_probs_ignores_nan_and_negative():
    probs = np.array([np.nan, -0.0, -1.0, np.inf, 0.9, 0.2], np.float32).reshape(1, 1, 2, 3)
    expected = mask2rle(probs[0, 0] > 0.5)
    assert rle.encode_probs(probs)[0][0] == expected
    assert rle.encode_probs(probs.astype(np.float16))[0][0] == expected


def test_encode_probs_noise_makes_long_strings_fast_enough_to_finish(rng):
    probs = rng.random((1, 1, 256, 1600)).astype(np.float32)
    text = rle.encode_probs(probs)[0][0]
    assert text == mask2rle(probs[0, 0] > 0.5) and len(text) > 500_000


def test_encode_probs_empty_batch():
    assert rle.encode_probs(np.zeros((0, 4, 32, 32), np.float32)) == []


# ---- COCO ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(small_masks)
def test_coco_round_trip(mask):
    text = rle.encode(mask)
    coco = rle.to_coco(text, mask.shape)
    assert sum(coco["counts"]) == mask.size and coco["size"] == list(mask.shape)
    assert rle.from_coco(coco) == text


# pycocotools' own decode trips a NumPy 2 deprecation inside its Cython code, not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_coco_matches_pycocotools(rng):
    mask_api = pytest.importorskip("pycocotools.mask")
    mask = random_mask(rng, (64, 80), 0.2)
    text = rle.encode(mask)
    theirs = mask_api.frPyObjects(rle.to_coco(text, mask.shape), *mask.shape)
    np.testing.assert_array_equal(mask_api.decode(theirs), mask)
    compressed = mask_api.encode(np.asfortranarray(mask))
    assert rle.from_coco(compressed) == text
    assert rle.from_coco({"size": compressed["size"], "counts": compressed["counts"].decode()}) == text


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3", r"odd number of tokens \(3\)"),
        ("1 2 x 4", r"token 2 'x' is not a non-negative integer"),
        ("1 2 -5 4", r"token 2 '-5' is not a non-negative integer"),
        ("1.5 2", r"token 0 '1.5'"),
        ("0 3", r"run 0 \(tokens 0-1\): start 0 is < 1"),
        ("1 0", r"length 0 is < 1"),
        ("19 3", r"runs past the mask's 20 pixels"),
        ("5 3 2 1", r"start 2 is not after the previous run's end 7"),
        ("5 3 7 1", r"start 7 is not after the previous run's end 7"),
        ("1 99999999999999999999999", r"token 1 .* is too large"),
        ("1 -99999999999999999999999", r"token 1 .* is too large"),
        ("1 9223372036854775808", r"token 1 .* is too large"),
        ("1 0021", r"run 0 \(tokens 0-1\): start 1 length 21 runs past"),  # leading zeros are digits
        ("1 9223372036854775807", r"start 1 length 9223372036854775807 runs past"),  # INT64_MAX still parses
        ("1 999999999999999999", r"start 1 length 999999999999999999 runs past"),  # 18 digits
        ("1 9999999999999999999", r"token 1 .* is too large"),  # 19 digits
        ("1 18446744073709551617", r"token 1 .* is too large"),  # 2**64 + 1: would wrap to a valid 1
        ("1 000000000000000000000000026", r"start 1 length 26 runs past"),  # long, but small
    ],
)
def test_malformed_rle_names_the_problem(text, message):
    with pytest.raises(rle.RLEError, match=message):
        rle.decode(text, (4, 5))
    with pytest.raises(ValueError, match=message):
        rle.area(text, (4, 5))


def test_batch_error_names_the_item():
    with pytest.raises(rle.RLEError, match=r"item 2: .*token 0 'oops'"):
        rle.decode_batch(["1 1", "", "oops 1"], (4, 5))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros((4, 5), np.float32), TypeError, "bool or integer mask.*float32"),
        (np.array([["a", "b"]]), TypeError, "bool or integer mask.*<U1"),
        (np.zeros(5, np.uint8), ValueError, r"must be 2-D, got shape \(5,\)"),
        (np.zeros((2, 4, 5), np.uint8), ValueError, r"must be 2-D, got shape \(2, 4, 5\)"),
    ],
)
def test_bad_masks(value, error, message):
    with pytest.raises(error, match=message):
        rle.encode(value)


def read_only_out() -> np.ndarray:
    out = np.zeros((1, 5, 4), np.uint8).transpose(0, 2, 1)
    out.flags.writeable = False
    return out


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rle.decode("1 1", (0, 5)), ValueError, "two positive integers"),
        (lambda: rle.decode("1 1", 5), TypeError, r"shape must be \(height, width\)"),
        (lambda: rle.decode(123, (4, 5)), TypeError, "rle must be a str"),
        (lambda: rle.decode("1 1", (4, 5), order="K"), ValueError, "order must be 'F'"),
        (lambda: rle.decode_batch("1 1", (4, 5)), TypeError, "sequence of RLE strings"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), out=[0]), TypeError, "out must be a numpy.ndarray, got list"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), out=np.zeros((1, 5, 4), np.int8).transpose(0, 2, 1)), TypeError,
         "out must have dtype uint8, got int8"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), out=np.zeros((2, 5, 4), np.uint8).transpose(0, 2, 1)), ValueError,
         r"out must have shape \(1, 4, 5\) \(N, H, W\), got \(2, 4, 5\)"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), out=np.zeros((1, 4, 5), np.uint8)), ValueError,
         r"laid out as decode_batch returns it.*strides \(20, 5, 1\)"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), out=read_only_out()), ValueError, "out is read-only"),
        (lambda: rle.decode_batch(["1 1"], (4, 5), order="C", out=np.zeros((1, 5, 4), np.uint8).transpose(0, 2, 1)),
         ValueError, r"laid out as decode_batch returns it \(np.empty\(\(N, H, W\), np.uint8\)\); got strides \(20, 1, 4\)"),
        (lambda: rle.encode_batch(np.zeros((4, 5), np.uint8)), ValueError, "3-D or 4-D"),
        (lambda: rle.encode_batch(np.zeros((1, 4, 5), np.uint8), threads=0), ValueError, "threads must be"),
        (lambda: rle.encode_probs(np.zeros((1, 4, 8, 8))), TypeError, "float32 or float16.*float64"),
        (lambda: rle.encode_probs(np.zeros((4, 8, 8), np.float32)), ValueError, "4-D"),
        (lambda: rle.encode_probs(np.zeros((1, 4, 8, 8), np.float32), [0.5, 0.5]), ValueError, "one value per class"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 8, 8), np.float32), 1.5), ValueError, r"in \[0, 1\]"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 8, 8), np.float32), 0.5, -1), ValueError, "non-negative"),
        (lambda: rle.from_coco({"size": [2, 2], "counts": [1, 2]}), ValueError, "add up to 3 pixels"),
        (lambda: rle.from_coco({"counts": [4]}), ValueError, "'size' and 'counts'"),
        (lambda: rle.from_coco({"size": [2, 2], "counts": "~~"}), ValueError, "invalid byte|ends inside"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- real data ----------------------------------------------------------------------------------


def test_real_kaggle_encodings_round_trip_exactly(real_data):
    frame = pd.read_csv(real_data / "train_partial.csv")
    texts = frame["EncodedPixels"].tolist()
    assert len(texts) == 3689
    masks = rle.decode_batch(texts)
    assert rle.encode_batch(masks) == texts
    lengths = [sum(int(n) for n in t.split()[1::2]) for t in texts]
    np.testing.assert_array_equal(rle.area_batch(texts), lengths)
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), lengths)
    for k in range(0, len(texts), 97):  # the oracle is slow; a spread sample suffices
        np.testing.assert_array_equal(masks[k], rle2mask(texts[k]))


def test_portable_kernels_give_the_same_encodings(tmp_path) -> None:
    # The AVX2 kernels are picked at run time; run the layout and edge tests again on the portable ones.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "STEELFAST_DISABLE_AVX2": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "from steelfast.runtime import simd_kernels; print(simd_kernels())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "portable"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(root / "pyproject.toml"),
         "--rootdir", str(root), str(Path(__file__)), "-k", "edges or layout or coverage or oracle or stale"],
        env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False,
    )
    assert tests.returncode == 0, tests.stdout[-2000:] + tests.stderr[-2000:]


# ---- strict COCO counts and input errors that name the argument (issue 13) -----------------------


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([1.9, 2.9, 13.9], r"counts\[0\] must be an integer, got float 1\.9"),
        ([1, 2.0, 13], r"counts\[1\] must be an integer, got float 2\.0"),
        ([True, 15], r"counts\[0\] must be an integer, got bool True"),
        ([1, np.bool_(True), 14], r"counts\[1\] must be an integer, got bool np.True_"),
        (["1", "15"], r"counts\[0\] must be an integer, got str '1'"),
        ([[16]], r"counts\[0\] must be an integer, got list \[16\]"),
        ([2**64], r"counts\[0\] must lie in \[0, 2\*\*63 - 1\], got 18446744073709551616"),
        ([0, 2**63], r"counts\[1\] must lie in \[0, 2\*\*63 - 1\], got 9223372036854775808"),
        ([-1, 17], r"counts\[0\] must lie in \[0, 2\*\*63 - 1\], got -1"),
        ([2**63 - 1, 2**63 - 1, 2], r"add up to 18446744073709551616 pixels, but size 4x4 has 16"),
        ([2**62] * 4 + [16], r"add up to 18446744073709551632 pixels"),
        (np.array([1.0, 15.0]), r"1-D integer array, got dtype float64"),
        (np.ones(16, np.bool_), r"1-D integer array, got dtype bool"),
        (np.array([[16]]), r"1-D integer array, got dtype int64 shape \(1, 1\)"),
        (np.array([2**64 - 1], np.uint64), r"counts\[0\] must lie in \[0, 2\*\*63 - 1\], got 18446744073709551615"),
        (16, r"list of integers or a compressed string, got 16"),
        ("0\u00e9", r"non-ASCII character 'é' at 1"),
        ("0\ud800", r"non-ASCII character '\\ud800' at 1"),
    ],
)
def test_from_coco_is_strict(counts, message):
    with pytest.raises(ValueError, match=message):
        rle.from_coco({"size": [4, 4], "counts": counts})


def test_from_coco_counts_string_values_are_checked_too():
    # "O" is the 5-bit group 31 (79 - 48) with the sign bit set: the count -1, refused.
    with pytest.raises(ValueError, match=r"counts\[1\] \(decoded from the counts string\) must lie in .*got -1"):
        rle.from_coco({"size": [4, 4], "counts": "0O"})


@pytest.mark.parametrize("kind", [list, tuple, np.array, lambda c: [np.int32(v) for v in c]])
def test_from_coco_accepts_integer_sequences(kind):
    assert rle.from_coco({"size": [4, 4], "counts": kind([1, 2, 0, 3, 10])}) == "2 5"
    assert rle.from_coco({"size": np.array([4, 4]), "counts": kind([16])}) == ""


@pytest.mark.parametrize(
    ("size", "error", "message"),
    [
        ([0, 4], ValueError, r"COCO size must be two positive integers"),
        (4, TypeError, r"COCO size must be \(height, width\), got 4"),
        ([2**40, 2**40], ValueError, r"COCO size \[1099511627776, 1099511627776\] has .* pixels, more than"),
    ],
)
def test_from_coco_names_a_bad_size(size, error, message):
    with pytest.raises(error, match=message):
        rle.from_coco({"size": size, "counts": [16]})


HUGE = (2**40, 2**40)
HUGE_MESSAGE = r"shape \(1099511627776, 1099511627776\) has 1208925819614629174706176 pixels, more than RLE numbers"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rle.decode("1 1", HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.decode_batch(["1 1"], HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.area("1 1", HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.area_batch(["1 1"], HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.runs("1 1", HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.to_coco("1 1", HUGE), ValueError, HUGE_MESSAGE),
        (lambda: rle.area("1 1", (2**63, 1)), ValueError, "more than RLE numbers reach"),
        (lambda: rle.area("1 1", (float("inf"), 1)), ValueError, r"two positive integers .*got \(inf, 1\)"),
        (lambda: rle.area("1 1", (float("nan"), 1)), TypeError, r"shape must be \(height, width\)"),
        (lambda: rle.decode_batch(["1 1"], (4, 4), threads=2**31), ValueError,
         r"threads must be an integer in \[1, 2147483647\] or None, got 2147483648"),
        (lambda: rle.area_batch(["1 1"], (4, 4), threads=2**64), ValueError, r"threads must be .*got 18446744073709551616"),
        (lambda: rle.encode_batch(np.zeros((1, 4, 4), np.uint8), threads=np.uint64(2**63)), ValueError,
         r"threads must be .*got np.uint64\(9223372036854775808\)"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), threads=2**31), ValueError, "threads must be"),
        (lambda: rle.encode_probs(np.zeros((0, 1, 4, 4), np.float32), threads=-1), ValueError, "threads must be .*got -1"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), 0.5, 2**70), ValueError,
         r"min_areas must be non-negative integers below 2\*\*63, got 1180591620717411303424"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), 0.5, 2**63), ValueError, "min_areas must be"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), 0.5, float("inf")), ValueError,
         "min_areas must be .*got inf"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), 0.5, float("nan")), ValueError,
         "min_areas must be .*got nan"),
        (lambda: rle.encode_probs(np.zeros((1, 1, 4, 4), np.float32), 10**400), ValueError,
         "thresholds has a value too large for a float"),
        (lambda: rle.decode("1 \ud800", (4, 4)), ValueError,
         r"rle is not valid Unicode: a lone surrogate '\\ud800' at index 2 of '1 \\ud800'"),
        (lambda: rle.decode_batch(["1 1", "\udcff 1"], (4, 4)), ValueError, r"rles\[1\] is not valid Unicode"),
        (lambda: rle.area("\udcff", (4, 4)), ValueError, "rle is not valid Unicode"),
        (lambda: rle.runs("1 1\ud83d", (4, 4)), ValueError, "rle is not valid Unicode"),
    ],
)
def test_out_of_range_arguments_are_named_not_a_binding_dump(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "incompatible function arguments" not in str(info.value)


@pytest.mark.parametrize("char", ["é", "€", "😀"])  # 2, 3 and 4 UTF-8 bytes
@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc"])
def test_quoted_token_is_cut_on_a_character_boundary(char, prefix):
    token = prefix + char * 30
    with pytest.raises(rle.RLEError, match=r"token 1 '.*\.\.\.' is not a non-negative integer") as info:
        rle.decode("1 " + token, (4, 4))
    shown = str(info.value).split("'")[1].removesuffix("...")
    assert token.startswith(shown) and len(shown.encode()) > 24 - len(char.encode())


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["1 2", "5 x"], (1, "token 1 'x' is not a non-negative integer")),
        (["1 2 3"], (0, "odd number of tokens (3): RLE needs 'start length' pairs; token 2 has no length")),
        (["", "1 2", "17 1"], (2, "run 0 (tokens 0-1): start 17 length 1 runs past the mask's 16 pixels")),
    ],
)
def test_failed_item_reads_which_text_of_a_batch_failed(texts: list, expected: tuple) -> None:
    with pytest.raises(rle.RLEError) as raised:
        rle.decode_batch(texts, (4, 4))
    assert rle.failed_item(raised.value) == expected


@pytest.mark.parametrize("message", ["odd number of tokens", "item x: not a number", "items 3: no", "item 3"])
def test_failed_item_is_none_for_other_messages(message: str) -> None:
    assert rle.failed_item(rle.RLEError(message)) is None


def test_failed_item_is_none_for_a_non_ascii_index() -> None:
    assert rle.failed_item(rle.RLEError("item \u00b2: x")) is None  # '²'.isdigit() is True, int('²') fails
