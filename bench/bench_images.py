"""Image decoding and synthetic-data speed.

Decoding: OpenCV ``imdecode(IMREAD_GRAYSCALE)``, simplejpeg ``decode_jpeg(colorspace="GRAY")`` and
PIL's draft mode, next to PIL's full decode (the reference), on the real Severstal JPEGs in
``../shared`` (skipped when absent). Every decoder must give PIL's pixels within 1 grey level
(libjpeg builds may round the luma by one; on these files all of them are in fact exact).
OpenCV and simplejpeg nearly tie (simplejpeg 2-4 % ahead); ``read_gray`` uses
OpenCV, a core dependency that also reads PNG/BMP/TIFF (see steelfast/images.py).

Synthesis: ``make_dataset`` must write at least 50 images/s on one core (JPEG and CSV included), and
the same seed must give the same bytes.

Run: ``python -m pytest bench/bench_images.py -p no:cacheprovider --benchmark-enable``
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import shared_data_dir, speedup
from PIL import Image

from steelfast.data.synth import make_dataset
from steelfast.images import decode_gray

simplejpeg = pytest.importorskip("simplejpeg")

TOLERANCE = 1  # grey levels


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    folder = shared_data_dir() / "images"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"real JPEGs absent ({folder})")
    return [f.read_bytes() for f in files]


def _pil_full(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)).convert("L"))


def _pil_draft(b: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(b))
    im.draft("L", im.size)  # let libjpeg output the luma plane directly
    return np.asarray(im.convert("L"))


def _cv2(b: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)


def _simplejpeg(b: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(b, colorspace="GRAY")[:, :, 0]


DECODERS = {
    "pil_full": _pil_full,
    "pil_draft": _pil_draft,
    "cv2": _cv2,
    "simplejpeg": _simplejpeg,
    "read_gray": decode_gray,
}


@pytest.mark.parametrize("name", list(DECODERS))
def test_decode_gray(timed, jpegs: list[bytes], name: str) -> None:
    fn = DECODERS[name]
    out = timed("decode-gray", name, lambda: [fn(b) for b in jpegs])
    for b, img in zip(jpegs, out):
        ref = _pil_full(b)
        assert img.shape == ref.shape == (256, 1600) and img.dtype == np.uint8
        assert np.abs(img.astype(np.int16) - ref).max() <= TOLERANCE


def test_read_gray_is_the_fastest_decoder() -> None:
    ours = speedup("decode-gray", "read_gray", "pil_full")
    assert ours > 1.3, f"read_gray only {ours:.2f}x PIL's full decode"
    for other in ("pil_draft", "simplejpeg"):
        # read_gray is cv2 plus input checks; cv2 and simplejpeg tie within a few %, so allow 10 %.
        assert speedup("decode-gray", "read_gray", other) > 0.90, other


N_SYNTH = 60


def test_synth_throughput(timed, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    timed(
        "synth",
        "make_dataset",
        lambda: make_dataset(out, N_SYNTH, 0, seed=1, progress=False, overwrite=True),
    )
    again = make_dataset(tmp_path / "again", N_SYNTH, 0, seed=1, progress=False)
    files = sorted(p.name for p in (out / "train_images").iterdir())
    assert len(files) == N_SYNTH
    assert (out / "train.csv").read_bytes() == (again / "train.csv").read_bytes()
    for name in files:
        assert (out / "train_images" / name).read_bytes() == (
            again / "train_images" / name
        ).read_bytes()


def test_synth_reaches_50_images_per_second() -> None:
    from harness import _TIMES

    key = ("synth", "make_dataset")
    if key not in _TIMES:
        pytest.skip("no timings in this run (benchmarks disabled or filtered)")
    rate = N_SYNTH / _TIMES[key]
    assert rate >= 50, f"synth writes {rate:.1f} images/s, goal 50"
