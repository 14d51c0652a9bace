"""Defect records of a folder: Segmenter.predict_records, the json and coco outputs, and their round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from steelfast import cli, rle
from steelfast.checkpoint import default_metadata, save_checkpoint
from steelfast.inference import record_writer
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.run import segment_to_file
from steelfast.inference.segmenter import Segmenter
from steelfast.models import UNet

SIZE = (64, 128)
POST = {"thresholds": [0.5, 0.45, 0.55, 0.5], "min_areas": [0, 20, 0, 50]}
# pycocotools' own decode trips a NumPy 2 deprecation inside its Cython code, not ours (as in test_rle.py).
COCO_DECODE_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


def tiny_unet() -> UNet:
    torch.manual_seed(3)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    model = tiny_unet()
    meta = {**default_metadata(model), "postprocess": POST}
    return TorchBackend(model, meta, device="cpu", precision="fp32", compile=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(11)
    for i in range(6):
        noise = rng.integers(0, 256, SIZE, dtype=np.uint8)
        cv2.imwrite(str(d / f"img{i:02d}.png"), cv2.GaussianBlur(noise, (7, 7), 3))
    (d / "img02.png").write_bytes(b"this is not a png")
    cv2.imwrite(str(d / "img04.png"), np.zeros((32, 32), np.uint8))  # another size
    return d


def masks_of_csv(path: Path) -> dict[tuple[str, int], np.ndarray]:
    table = pd.read_csv(path, keep_default_na=False)
    rows = zip(table["ImageId"], table["ClassId"], table["EncodedPixels"])
    return {(i, int(c)): rle.decode(t, SIZE) for i, c, t in rows}


def test_predict_records_carries_the_predict_rles(backend: TorchBackend, folder: Path) -> None:
    seg = Segmenter(backend=backend, batch_size=2)
    paths = [folder / f"img{i:02d}.png" for i in (0, 1, 3, 5)]
    records = seg.predict_records(paths)
    assert [r.image_id for r in records] == [p.name for p in paths]
    assert [list(r.rles) for r in records] == seg.predict(paths)
    assert sum(len(r.defects) for r in records) > 0  # the fixture does produce defects
    for r in records:
        assert (r.height, r.width) == SIZE and len(r.presence) == 4
        for c in range(4):
            union = np.zeros(SIZE, np.uint8)
            for d in r.defects:
                if d.class_id == c + 1:
                    union |= rle.decode(d.rle, SIZE)
            np.testing.assert_array_equal(union, rle.decode(r.rles[c], SIZE))
    named = seg.predict_records(np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]), image_ids="abcd")
    assert [r.image_id for r in named] == list("abcd") and [r.rles for r in named] == [r.rles for r in records]


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "match"),
    [
        (np.zeros((2, 8, 8), np.float32), {}, TypeError, "image 0 must be uint8"),
        (np.zeros((2, 2, 8, 8), np.uint8), {}, ValueError, r"images must be \(N, H, W\) or \(H, W\)"),
        (np.zeros((2, 8, 8), np.uint8), {"image_ids": ["a"]}, ValueError, "got 1 image_ids for 2 images"),
    ],
)
def test_predict_records_refuses_bad_input(backend: TorchBackend, images: np.ndarray, kwargs: dict, error: type,
                                           match: str) -> None:
    with pytest.raises(error, match=match):
        Segmenter(backend=backend).predict_records(images, **kwargs)


@pytest.mark.filterwarnings(COCO_DECODE_WARNING)
def test_coco_and_json_round_trip_to_the_csv_masks(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    coco_mod = pytest.importorskip("pycocotools.coco")
    seg = Segmenter(backend=backend, batch_size=2)
    run = {"segmenter": seg, "progress": False, "image_size": SIZE}
    csv = segment_to_file(folder, tmp_path / "sub.csv", **run)
    lines = segment_to_file(folder, tmp_path / "rec.jsonl", **run)
    coco = segment_to_file(folder, tmp_path / "rec.json", **run)
    assert lines.failures == coco.failures == csv.failures and set(csv.failures) == {"img02.png", "img04.png"}
    assert lines.defects == coco.defects == csv.defects and lines.images == coco.images == csv.images == 4
    for summary in (lines, coco):
        assert summary.failures_file.read_text() == csv.failures_file.read_text()
    truth = masks_of_csv(tmp_path / "sub.csv")

    api = coco_mod.COCO(str(tmp_path / "rec.json"))
    images = sorted(api.imgs.values(), key=lambda im: im["id"])
    assert [im["file_name"] for im in images] == ["img00.png", "img01.png", "img03.png", "img05.png"]
    assert {c["id"] for c in api.loadCats(api.getCatIds())} == {1, 2, 3, 4}
    assert len(api.anns) > 0
    for im in images:
        assert (im["height"], im["width"]) == SIZE and len(im["presence"]) == 4
        for c in (1, 2, 3, 4):
            union = np.zeros(SIZE, np.uint8)
            for ann in api.loadAnns(api.getAnnIds(imgIds=[im["id"]], catIds=[c])):
                mask = api.annToMask(ann)
                assert ann["area"] == mask.sum() and not (union & mask).any()  # defects do not overlap
                x, y, w, h = ann["bbox"]
                assert mask[y : y + h, x : x + w].sum() == ann["area"] and 0 < ann["score"] <= ann["score_max"] <= 1
                union |= mask
            np.testing.assert_array_equal(union, truth[(im["file_name"], c)], err_msg=f"{im['file_name']} class {c}")

    records = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert [r["image_id"] for r in records] == [im["file_name"] for im in images]
    ann_count = 0
    for r in records:
        assert set(r) == {"image_id", "height", "width", "presence", "defects", "note"}
        assert set(r["presence"]) == {"1", "2", "3", "4"}
        for c in (1, 2, 3, 4):
            union = np.zeros(SIZE, np.uint8)
            for d in r["defects"]:
                assert set(d) == {"class_id", "bbox", "area", "score_mean", "score_max", "rle"}
                if d["class_id"] == c:
                    union |= rle.decode(d["rle"], SIZE)
            np.testing.assert_array_equal(union, truth[(r["image_id"], c)])
        ann_count += len(r["defects"])
    assert ann_count == len(api.anns)
    assert json.loads((tmp_path / "rec.json.run.json").read_text())["run"]["format"] == "coco"


@pytest.mark.filterwarnings(COCO_DECODE_WARNING)
def test_real_steel_round_trip(real_data: Path, tmp_path: Path) -> None:
    """The shipped model on real JPEGs: the COCO masks equal the CSV's."""
    coco_mod = pytest.importorskip("pycocotools.coco")
    folder = tmp_path / "real"
    folder.mkdir()
    for name in sorted(p.name for p in (real_data / "images").glob("*.jpg"))[:4]:
        shutil.copy(real_data / "images" / name, folder / name)
    seg = Segmenter(compile=False)
    segment_to_file(folder, tmp_path / "sub.csv", segmenter=seg, progress=False)
    segment_to_file(folder, tmp_path / "rec.json", segmenter=seg, progress=False)
    table = pd.read_csv(tmp_path / "sub.csv", keep_default_na=False)
    api = coco_mod.COCO(str(tmp_path / "rec.json"))
    by_name = {im["file_name"]: im["id"] for im in api.imgs.values()}
    for image_id, c, text in zip(table["ImageId"], table["ClassId"], table["EncodedPixels"]):
        union = np.zeros((256, 1600), np.uint8)
        for ann in api.loadAnns(api.getAnnIds(imgIds=[by_name[image_id]], catIds=[int(c)])):
            union |= api.annToMask(ann)
        np.testing.assert_array_equal(union, rle.decode(text))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_crash_leaves_no_partial_output(backend: TorchBackend, folder: Path, tmp_path: Path, suffix: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sink = record_writer.JsonLinesSink if suffix == ".jsonl" else record_writer.CocoSink
    real, calls = sink.add, {"n": 0}

    def crash_on_third(self: object, record: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        real(self, record)

    monkeypatch.setattr(sink, "add", crash_on_third)
    out = tmp_path / f"rec{suffix}"
    with pytest.raises(KeyboardInterrupt):
        segment_to_file(folder, out, segmenter=Segmenter(backend=backend), progress=False, image_size=SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # no output, no temp file, no lock left


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resume": True}, "a json output is written in one go: resume and overlays work with csv"),
        ({"overlays": "ov"}, "a json output is written in one go"),
        ({"format": "yaml"}, "unknown output format .*json \\(coco\\)"),
    ],
)
def test_records_options_are_checked_before_any_work(backend: TorchBackend, folder: Path, tmp_path: Path,
                                                     kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        segment_to_file(folder, tmp_path / "rec.jsonl", segmenter=Segmenter(backend=backend), progress=False, **kwargs)
    assert not (tmp_path / "rec.jsonl").exists()


def test_existing_records_output_needs_overwrite(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    out.write_text("old\n")
    run = {"segmenter": Segmenter(backend=backend), "progress": False, "image_size": SIZE}
    with pytest.raises(FileExistsError, match="rec.jsonl exists; pass overwrite=True"):
        segment_to_file(folder, out, **run)
    segment_to_file(folder, out, overwrite=True, **run)
    assert len(out.read_text().splitlines()) == 4


@pytest.mark.parametrize(("fmt", "name"), [("json", "out.jsonl"), ("coco", "out.json"), ("json", "records.txt")])
def test_cli_writes_records(folder: Path, tmp_path: Path, fmt: str, name: str) -> None:
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", tiny_unet(), {"postprocess": POST})
    for i in range(6):  # the command's default image size
        if i != 2:
            cv2.imwrite(str(folder / f"img{i:02d}.png"), np.full((256, 1600), 40 * i, np.uint8))
    out = tmp_path / name
    result = CliRunner().invoke(cli.app, ["segment", str(folder), "-o", str(out), "--format", fmt, "--model", str(ckpt),
                                          "--backend", "torch", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "failed: img02.png: cannot read image" in result.output and "5 images -> " in result.output
    text, names = out.read_text(), [f"img{i:02d}.png" for i in (0, 1, 3, 4, 5)]
    if fmt == "json":
        assert [json.loads(line)["image_id"] for line in text.splitlines()] == names
    else:
        assert [im["file_name"] for im in json.loads(text)["images"]] == names
    again = CliRunner().invoke(cli.app, ["segment", str(folder), "-o", str(out), "--format", fmt, "--resume",
                                         "--model", str(ckpt), "--backend", "torch", "--no-progress"])
    assert again.exit_code == 1 and again.output.startswith("error: a ") and "Traceback" not in again.output
