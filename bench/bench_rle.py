"""RLE encode/decode speed against the NumPy Kaggle codecs and pycocotools, on realistic masks.

Realistic masks: filled polygons and ellipses like the Severstal annotations, at coverages spread log-uniformly over
0.1 %-25 %, plus the real Kaggle masks when ../shared is present.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from harness import assert_goals, mask2rle, recorded_speedup, rle2mask, shared_data_dir, speedup

from steelfast import rle

pycoco = pytest.importorskip("pycocotools.mask")


def polygon_mask(rng: np.random.Generator, coverage: float) -> np.ndarray:
    mask = np.zeros((256, 1600), np.uint8)
    while mask.mean() < coverage:
        center = (int(rng.integers(0, 1600)), int(rng.integers(0, 256)))
        axes = (int(rng.integers(5, 120)), int(rng.integers(3, 60)))
        cv2.ellipse(mask, center, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
    return mask


def synthetic_set(n: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coverages = np.exp(rng.uniform(np.log(0.001), np.log(0.25), n))
    return np.stack([polygon_mask(rng, c) for c in coverages])


def real_set(n: int = 256) -> list[str]:
    path = shared_data_dir() / "train_partial.csv"
    if not path.is_file():
        pytest.skip(f"real data absent ({path})")
    texts = pd.read_csv(path)["EncodedPixels"].tolist()
    return texts[:: max(1, len(texts) // n)][:n]


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    return synthetic_set()


@pytest.fixture(scope="module")
def texts(masks) -> list[str]:
    return [mask2rle(m) for m in masks]


# ---- encode ---------------------------------------------------------------------------------------

def test_encode_reference_numpy(timed, masks, texts):
    assert timed("encode", "numpy", lambda: [mask2rle(m) for m in masks]) == texts


def test_encode_reference_pycocotools(timed, masks, texts):
    fortran = np.asfortranarray(masks.transpose(1, 2, 0))  # the layout pycocotools requires, made outside the timing
    encoded = timed("encode", "pycocotools", lambda: pycoco.encode(fortran))
    assert [rle.from_coco(e) for e in encoded[:8]] == texts[:8]


def test_encode_reference_count_nonzero(timed, masks):
    timed("encode", "count_nonzero", lambda: [np.count_nonzero(m) for m in masks])


def test_encode_steelfast(timed, masks, texts):
    assert timed("encode", "steelfast", lambda: [rle.encode(m) for m in masks]) == texts


def test_encode_goals():
    assert_goals(
        {
            "encode vs numpy": (speedup("encode", "steelfast", "numpy"), 15),
            "encode vs pycocotools": (speedup("encode", "steelfast", "pycocotools"), 4),
            # within 2x of the memory-read limit
            "encode vs count_nonzero": (speedup("encode", "steelfast", "count_nonzero"), 0.5),
        }
    )


# ---- decode ---------------------------------------------------------------------------------------

def test_decode_reference_numpy(timed, masks, texts):
    out = timed("decode", "numpy", lambda: [rle2mask(t) for t in texts])
    np.testing.assert_array_equal(np.stack(out), masks)


def test_decode_steelfast(timed, masks, texts):
    out = timed("decode", "steelfast", lambda: [rle.decode(t) for t in texts])
    np.testing.assert_array_equal(np.stack(out), masks)


def test_decode_goals():
    assert speedup("decode", "steelfast", "numpy") >= 15


# ---- real Kaggle masks ----------------------------------------------------------------------------

def test_real_decode_reference_numpy(timed):
    real = real_set()
    out = timed("real-decode", "numpy", lambda: [rle2mask(t) for t in real])
    assert [mask2rle(m) for m in out[:16]] == real[:16]


def test_real_decode_reference_allocate_and_touch(timed):
    # The floor for decoding into fresh memory: allocating an array of a mask's size and writing every byte of it.
    real = real_set()
    out = timed("real-decode", "np.ones", lambda: [np.ones((256, 1600), np.uint8) for _ in real])
    assert len(out) == len(real) and out[-1].all()


def test_real_decode_steelfast(timed):
    real = real_set()
    out = timed("real-decode", "steelfast", lambda: rle.decode_batch(real, threads=1))
    assert rle.encode_batch(out) == real


def test_real_decode_steelfast_mask_by_mask(timed):
    real = real_set()
    out = timed("real-decode", "steelfast-single", lambda: [rle.decode(t) for t in real])
    assert rle.encode_batch(np.stack(out)) == real


def test_real_decode_steelfast_into_reused_buffer(timed):
    real = real_set()
    buffer = rle.decode_batch(real)
    out = timed("real-decode", "steelfast-out", lambda: rle.decode_batch(real, threads=1, out=buffer))
    assert rle.encode_batch(out) == real


def test_real_encode_reference_numpy(timed):
    real = real_set()
    masks = rle.decode_batch(real)
    assert timed("real-encode", "numpy", lambda: [mask2rle(m) for m in masks]) == real


def test_real_encode_steelfast(timed):
    real = real_set()
    masks = rle.decode_batch(real)
    assert timed("real-encode", "steelfast", lambda: rle.encode_batch(masks, threads=1)) == real


def test_real_goals():
    # Decoding into a fresh array is bound by the kernel's first touch of new pages, so its goal is that floor: per
    # mask, no slower than allocating and touching an array of the same size. Decoding into out= skips that cost.
    for name, label in (("steelfast", "decode_batch into a fresh array"), ("steelfast-single", "decode mask by mask")):
        recorded = recorded_speedup("real-decode", name, "numpy")
        if recorded is not None:
            print(f"\nreal {label} vs numpy (recorded): {recorded:.2f}x", end="")
    assert_goals(
        {
            "real decode_batch, fresh array, vs np.ones per mask": (speedup("real-decode", "steelfast", "np.ones"), 1),
            "real decode mask by mask vs np.ones per mask": (speedup("real-decode", "steelfast-single", "np.ones"), 1),
            "real decode_batch(out=) vs numpy": (speedup("real-decode", "steelfast-out", "numpy"), 8),
            "real encode vs numpy": (speedup("real-encode", "steelfast", "numpy"), 15),
        }
    )


# ---- threads --------------------------------------------------------------------------------------

def test_encode_batch_one_thread(timed, masks, texts):
    assert timed("encode_batch", "1-thread", lambda: rle.encode_batch(masks, threads=1)) == texts


def test_encode_batch_two_threads(timed, masks, texts):
    assert timed("encode_batch", "2-threads", lambda: rle.encode_batch(masks, threads=2)) == texts


def test_encode_batch_goals():
    assert speedup("encode_batch", "2-threads", "1-thread") >= 1.7
