"""Tests for steelfast.analysis.overlay: colours, blending, layouts, PNG output and the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelfast import rle
from steelfast.analysis.overlay import (
    CLASS_COLORS,
    LEGEND_HEIGHT,
    VIRIDIS_POSITIONS,
    draw_legend,
    draw_overlay,
    overlay_file,
    overlay_pair,
    save_overlay,
)
from steelfast.cli import app


def test_colors_are_viridis() -> None:
    cmap = matplotlib.colormaps["viridis"]
    for c, x in VIRIDIS_POSITIONS.items():
        assert CLASS_COLORS[c] == tuple(round(v * 255) for v in cmap(x)[:3])
    # 1 green, 2 light blue, 3 dark blue, 4 yellow
    r, g, b = CLASS_COLORS[1]
    assert g > r and g > b
    assert CLASS_COLORS[2][2] > CLASS_COLORS[2][0] and sum(CLASS_COLORS[2]) > sum(CLASS_COLORS[3])
    assert CLASS_COLORS[3][2] > CLASS_COLORS[3][1]
    assert CLASS_COLORS[4][0] > 200 and CLASS_COLORS[4][1] > 200 and CLASS_COLORS[4][2] < 100


def _case(h: int = 32, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    gray = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    masks = np.zeros((4, h, w), np.uint8)
    masks[0, 2:10, 3:20] = 1
    masks[1, 12:20, 5:9] = 1
    masks[2, 5:30, 30:40] = 1
    masks[3, 20:31, 45:63] = 1
    return gray, masks


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_blend_inside_and_untouched_outside(alpha: float) -> None:
    gray, masks = _case()
    out = draw_overlay(gray, masks, alpha=alpha, outline=0)
    assert out.shape == (32, 64, 3) and out.dtype == np.uint8
    outside = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[outside], np.repeat(gray[outside][:, None], 3, axis=1))
    for c in range(4):
        m = masks[c].astype(bool)
        ref = (1 - alpha) * gray[m][:, None].astype(np.float64) + alpha * np.array(
            CLASS_COLORS[c + 1]
        )
        assert np.abs(out[m].astype(np.float64) - ref).max() <= 0.51


def test_outline_in_class_color() -> None:
    gray = np.zeros((40, 40), np.uint8)
    masks = np.zeros((4, 40, 40), np.uint8)
    masks[3, 10:30, 10:30] = 1
    out = draw_overlay(gray, masks, alpha=0.0, outline=2)
    assert tuple(out[10, 20]) == CLASS_COLORS[4]  # on the border
    assert tuple(out[20, 20]) == (0, 0, 0)  # inside, alpha 0


def test_pair_layouts() -> None:
    gray, masks = _case()
    L = LEGEND_HEIGHT
    assert overlay_pair(gray).shape == (32 + L, 64, 3)
    assert overlay_pair(gray, truth=masks).shape == (32 + L, 64, 3)
    assert overlay_pair(gray, pred=masks).shape == (32 + L, 64, 3)
    both = overlay_pair(gray, masks, np.zeros_like(masks), gap=4)
    assert both.shape == (68 + L, 64, 3)
    assert (both[32:36] == 255).all()
    np.testing.assert_array_equal(both[68:], draw_legend(64))
    # Without the legend, the panels alone (the layout before legends existed).
    np.testing.assert_array_equal(overlay_pair(gray, pred=masks, legend=False), draw_overlay(gray, masks))
    assert overlay_pair(gray, masks, masks, gap=4, legend=False).shape == (68, 64, 3)


def _has_color(region: np.ndarray, color: tuple[int, int, int]) -> bool:
    return bool((region.reshape(-1, 3) == np.array(color, np.uint8)).all(axis=1).any())


@pytest.mark.parametrize("width", [1600, 400, 64])
def test_legend_shows_every_class_in_its_colour(width: int) -> None:
    gray = np.full((40, width), 128, np.uint8)
    out = overlay_pair(gray, pred=np.zeros((4, 40, width), np.uint8))
    assert out.shape == (40 + LEGEND_HEIGHT, width, 3)
    legend = out[40:]
    cell = width // 4
    for i, (cls, color) in enumerate(CLASS_COLORS.items()):
        # Each class's colour sits in its own quarter of the strip, and nowhere in the panel.
        assert _has_color(legend[:, i * cell : (i + 1) * cell], color), cls
        assert not _has_color(out[:40], color)


def test_legend_writes_number_and_name_where_there_is_room() -> None:
    from steelfast.severstal import CLASS_NAMES

    wide, narrow = draw_legend(1600), draw_legend(64)
    # Text pixels (anti-aliased, neither white nor a swatch colour) span far further with names.
    def text_extent(strip: np.ndarray, cell: int) -> int:
        first = strip[:, :cell]
        ink = (first != 255).any(axis=2).any(axis=0)
        return int(np.flatnonzero(ink).max())

    assert text_extent(wide, 400) > 14 + 5 * len(f"1 {CLASS_NAMES[1]}")
    assert text_extent(narrow, 16) < 16
    with pytest.raises(ValueError, match="legend width must be >= 1, got 0"):
        draw_legend(0)


@pytest.mark.parametrize(
    ("gray", "masks", "match"),
    [
        (np.zeros((8, 8), np.float32), np.zeros((4, 8, 8)), r"uint8 \(H, W\), got float32"),
        (
            np.zeros((8, 8), np.uint8),
            np.zeros((3, 8, 8)),
            r"masks must be \(4, 8, 8\), got \(3, 8, 8\)",
        ),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 8, 9)), r"got \(4, 8, 9\)"),
    ],
)
def test_bad_inputs(gray, masks, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        draw_overlay(gray, masks)


def test_bad_alpha() -> None:
    gray, masks = _case()
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 2"):
        draw_overlay(gray, masks, alpha=2)


def test_save_overlay_png(tmp_path: Path) -> None:
    gray, masks = _case()
    p = save_overlay(tmp_path / "sub" / "o.png", gray, masks, masks)
    with Image.open(p) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 70 + LEGEND_HEIGHT)
        arr = np.asarray(im)
    np.testing.assert_array_equal(arr, overlay_pair(gray, masks, masks))
    with pytest.raises(ValueError, match=r"must be a .png file, got .*o.jpg"):
        save_overlay(tmp_path / "o.jpg", gray, masks)


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    gray = np.full((256, 1600), 100, np.uint8)
    img = tmp_path / "abc123def.jpg"
    cv2.imwrite(str(img), cv2.merge([gray, gray, gray]))
    m = np.zeros((256, 1600), np.uint8)
    m[50:100, 200:400] = 1
    labels = tmp_path / "train.csv"
    pd.DataFrame({"ImageId": [img.name], "ClassId": [3], "EncodedPixels": [rle.encode(m)]}).to_csv(
        labels, index=False
    )
    pred = tmp_path / "sub.csv"
    pd.DataFrame(
        {"ImageId": [img.name], "EncodedPixels": [rle.encode(m[:, ::-1])], "ClassId": [4]}
    ).to_csv(pred, index=False)
    return img, labels, pred


def test_overlay_file(files, tmp_path: Path) -> None:
    img, labels, pred = files
    out = overlay_file(img, tmp_path / "o.png", labels=labels, pred=pred)
    arr = np.asarray(Image.open(out))
    assert arr.shape == (256 * 2 + 6 + LEGEND_HEIGHT, 1600, 3)
    truth_panel, pred_panel = arr[:256], arr[262:]
    assert tuple(truth_panel[75, 300]) != (100, 100, 100) and tuple(truth_panel[75, 1300]) == (
        100,
        100,
        100,
    )
    assert tuple(pred_panel[75, 1300]) != (100, 100, 100) and tuple(pred_panel[75, 300]) == (
        100,
        100,
        100,
    )


def test_cli_overlay(files, tmp_path: Path) -> None:
    img, labels, pred = files
    runner = CliRunner()
    out = tmp_path / "cli.png"
    res = runner.invoke(
        app, ["overlay", str(img), "--labels", str(labels), "--pred", str(pred), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.is_file()
    res = runner.invoke(app, ["overlay", str(tmp_path / "none.jpg"), "--out", str(out)])
    assert res.exit_code == 1 and "none.jpg" in res.output
    res = runner.invoke(app, ["overlay", str(img), "--out", str(tmp_path / "x.gif")])
    assert res.exit_code == 1 and "must be a .png file" in res.output
