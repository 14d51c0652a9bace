"""Tests for steelfast.images: grayscale decoding, errors naming the file, listing, model input."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from steelfast.images import ImageReadError, decode_gray, list_images, read_gray, to_model_input

SHARED = Path(
    os.environ.get(
        "STEELFAST_SHARED_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "severstal",
    )
)
REAL_IMAGES = SHARED / "images"


def _steel_like(seed: int = 0, shape: tuple[int, int] = (256, 1600)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (shape[0] // 8, shape[1] // 8)).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _write_jpeg_rgb(path: Path, gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.merge([gray, gray, gray]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


@pytest.mark.parametrize("shape", [(256, 1600), (64, 96), (17, 33)])
def test_read_gray_jpeg_matches_pil(tmp_path: Path, shape: tuple[int, int]) -> None:
    gray = _steel_like(1, shape)
    p = tmp_path / "a.jpg"
    _write_jpeg_rgb(p, gray)
    out = read_gray(p)
    assert out.dtype == np.uint8 and out.shape == shape and out.flags.c_contiguous
    ref = np.asarray(Image.open(p).convert("L"))
    # Decoders may round the luma differently; 1 grey level is the most libjpeg builds differ by.
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert np.abs(out.astype(int) - gray).mean() < 3  # and it is the image that was written


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_read_gray_lossless_formats_exact(tmp_path: Path, suffix: str) -> None:
    gray = _steel_like(2, (40, 72))
    p = tmp_path / f"b{suffix}"
    assert cv2.imwrite(str(p), gray)
    np.testing.assert_array_equal(read_gray(p), gray)


def test_read_gray_png_uppercase_and_str_path(tmp_path: Path) -> None:
    gray = _steel_like(3, (32, 64))
    p = tmp_path / "C.PNG"
    assert cv2.imwrite(str(p), gray)
    np.testing.assert_array_equal(read_gray(str(p)), gray)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_jpeg(tmp: Path) -> Path:
    data = _write_jpeg_rgb(tmp / "full.jpg", _steel_like(4))
    p = tmp / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    return p


def _truncated_png(tmp: Path) -> Path:
    _, buf = cv2.imencode(".png", _steel_like(5, (64, 64)))
    p = tmp / "cut.png"
    p.write_bytes(buf.tobytes()[:100])
    return p


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda t: _write(t / "empty.jpg", b""), r"empty\.jpg.*empty"),
        (lambda t: _write(t / "text.jpg", b"hello, not an image"), r"text\.jpg.*not a decodable"),
        (lambda t: _write(t / "junk.png", bytes(range(256)) * 4), r"junk\.png"),
        (_truncated_jpeg, r"cut\.jpg.*truncated"),
        (_truncated_png, r"cut\.png"),
    ],
    ids=["empty", "text", "junk", "truncated-jpeg", "truncated-png"],
)
def test_read_gray_bad_files_raise_naming_the_file(tmp_path: Path, make, match: str) -> None:
    p = make(tmp_path)
    with pytest.raises(ImageReadError, match=match):
        read_gray(p)


def test_image_read_error_is_value_error(tmp_path: Path) -> None:
    assert issubclass(ImageReadError, ValueError)
    with pytest.raises(ImageReadError, match="is a directory"):
        read_gray(tmp_path)


def test_read_gray_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_gray(tmp_path / "nope.jpg")


def test_decode_gray_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="expects bytes, got str"):
        decode_gray("abc")  # type: ignore[arg-type]


def test_list_images_sorted_case_insensitive(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.jpg", "c.png", "d.jpeg", "e.bmp", "f.TIF", "notes.txt", "g.csv"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in list_images(tmp_path)] == [
        "a.jpg",
        "b.JPG",
        "c.png",
        "d.jpeg",
        "e.bmp",
        "f.TIF",
    ]


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.jpg"):
        list_images(f)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batched", [False, True])
def test_to_model_input_formula(channels: int, batched: bool) -> None:
    gray = np.random.default_rng(6).integers(0, 256, (2, 32, 64), dtype=np.uint8)
    x = gray if batched else gray[0]
    out = to_model_input(x, 0.4, 0.2, channels)
    n = 2 if batched else 1
    assert out.shape == (n, channels, 32, 64) and out.dtype == np.float32 and out.flags.c_contiguous
    ref = (gray[:n].astype(np.float64) / 255.0 - 0.4) / 0.2
    for c in range(channels):
        np.testing.assert_allclose(out[:, c], ref, rtol=0, atol=1e-5)


def test_to_model_input_per_channel_stats() -> None:
    gray = np.full((4, 4), 51, dtype=np.uint8)
    out = to_model_input(gray, [0.1, 0.2, 0.3], [0.5, 0.25, 1.0], 3)
    np.testing.assert_allclose(out[0, :, 0, 0], [(0.2 - 0.1) / 0.5, 0.0, -0.1], atol=1e-6)


@pytest.mark.parametrize(
    ("gray", "mean", "std", "channels", "exc", "match"),
    [
        (np.zeros((4, 4), np.float32), 0.5, 0.2, 3, TypeError, "uint8.*float32"),
        (np.zeros((1, 1, 4, 4), np.uint8), 0.5, 0.2, 3, ValueError, r"shape \(1, 1, 4, 4\)"),
        (np.zeros((4, 4), np.uint8), 0.5, 0.0, 3, ValueError, r"std must be > 0, got \[0.0\]"),
        (
            np.zeros((4, 4), np.uint8),
            0.5,
            0.2,
            0,
            ValueError,
            "channels must be a positive int, got 0",
        ),
        (
            np.zeros((4, 4), np.uint8),
            [0.5, 0.4],
            0.2,
            3,
            ValueError,
            "mean must be a scalar or have 3 values",
        ),
        (np.zeros((4, 4), np.uint8), float("nan"), 0.2, 1, ValueError, "mean must be finite"),
    ],
)
def test_to_model_input_errors(gray, mean, std, channels, exc, match) -> None:
    with pytest.raises(exc, match=match):
        to_model_input(gray, mean, std, channels)


@pytest.mark.skipif(not REAL_IMAGES.is_dir(), reason="shared Severstal images not available")
def test_real_jpegs_decode_like_pil() -> None:
    files = sorted(REAL_IMAGES.glob("*.jpg"))[:8]
    assert files
    for f in files:
        out = read_gray(f)
        assert out.shape == (256, 1600)
        rgb = np.asarray(Image.open(io.BytesIO(f.read_bytes())).convert("RGB"))
        assert np.array_equal(rgb[..., 0], rgb[..., 1])  # grey stored as RGB
        assert np.abs(out.astype(int) - rgb[..., 0]).max() <= 1
