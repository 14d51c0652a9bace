"""steelfast.analysis.evaluate and `steelfast evaluate`: the per-class table against hand counts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from steelfast import cli
from steelfast.analysis.evaluate import evaluate_folder, format_report, pair_report
from steelfast.checkpoint import save_checkpoint
from steelfast.efficientnet import GatedUNet
from steelfast.rle import encode

runner = CliRunner()


def test_pair_report_by_hand() -> None:
    truth = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], bool)
    pred = np.array([[1, 1], [0, 0], [0, 1], [1, 0]], bool)
    dice = np.array([[0.5, 0.0], [1.0, 1.0], [0.0, 0.8], [0.0, 0.0]])
    rep = pair_report(truth, pred, dice)
    one = rep.loc[1]
    assert (one["pairs"], one["truth_defects"], one["pred_defects"]) == (4, 2, 2)
    assert one["score"] == pytest.approx(1.5 / 4) and one["all_empty"] == pytest.approx(0.5)
    assert one["dice_defects"] == pytest.approx(0.25)
    assert one["fp_rate_empty"] == pytest.approx(0.5)  # image 3 is clean and got a mask
    assert one["precision"] == pytest.approx(0.5) and one["recall"] == pytest.approx(0.5)
    everything = rep.loc["all"]
    assert everything["pairs"] == 8 and everything["score"] == pytest.approx(dice.mean())
    assert everything["all_empty"] == pytest.approx(4 / 8)
    assert everything["dice_defects"] == pytest.approx((0.5 + 0.0 + 0.8 + 0.0) / 4)
    assert "fp_rate_empty" in format_report(rep)


@pytest.mark.parametrize(("shapes", "match"), [(((2, 4), (2, 4), (2, 3)), "equal"), (((8,), (8,), (8,)), "equal")])
def test_pair_report_shape_errors(shapes: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pair_report(*(np.zeros(s) for s in shapes))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(3):
        cv2.imwrite(str(images / f"img{k}.jpg"), rng.integers(0, 255, (256, 1600), dtype=np.uint8))
    m = np.zeros((256, 1600), np.uint8)
    m[100:150, 200:400] = 1
    rows.append({"ImageId": "img0.jpg", "ClassId": 3, "EncodedPixels": encode(m)})
    rows.append({"ImageId": "img2.jpg", "ClassId": 1, "EncodedPixels": encode(m)})
    labels = root / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    return images, labels


def _model(tmp_path: Path, gate: list[float]) -> Path:
    torch.manual_seed(0)
    net = GatedUNet(gate_thresholds=gate)
    return save_checkpoint(tmp_path / "m.safetensors", net, {"postprocess": {"thresholds": [0.0] * 4, "min_areas": [0] * 4}})


def test_gate_closed_scores_all_empty(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [2.0] * 4), backend="torch")
    assert result.score == pytest.approx(result.all_empty) == pytest.approx(10 / 12)
    assert int(result.report.loc["all", "pred_defects"]) == 0
    assert int(result.report.loc["all", "truth_defects"]) == 2 and not result.failures


def test_gate_open_predicts_everything(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [0.0] * 4), backend="torch", overlays=tmp_path / "ov")
    rep = result.report
    assert int(rep.loc["all", "pred_defects"]) == 12 and rep.loc["all", "fp_rate_empty"] == 1.0
    assert rep.loc[3, "recall"] == 1.0 and rep.loc[3, "precision"] == pytest.approx(1 / 3)
    # The whole image predicted against a 50×200 box: Dice 2·10000 / (409600 + 10000).
    assert rep.loc[3, "dice_defects"] == pytest.approx(20000 / 419600, rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_cli_evaluate(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    model = _model(tmp_path, [2.0] * 4)
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(labels),
                                  "--model", str(model), "--no-progress", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    assert "Kaggle score 0.8333 (all-empty 0.8333, +0.0000) over 3 images" in res.output
    assert "dice_defects" in res.output
    assert ("expected at the Kaggle train set's class rates (0.071/0.020/0.410/0.064): not estimable, no defect "
            "(or no clean image) of class 2, 4 among these images (all-empty 0.8589)") in res.output


@pytest.mark.parametrize("suffix", [".json", ".csv", ".png"])
def test_cli_evaluate_writes_the_result(tmp_path: Path, folder: tuple[Path, Path], suffix: str) -> None:
    images, labels = folder
    out = tmp_path / "res" / f"evaluation{suffix}"
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(labels), "-o", str(out),
                                  "--model", str(_model(tmp_path, [2.0] * 4)), "--no-progress", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and not list(out.parent.glob(".*.tmp"))
    if suffix == ".json":
        summary = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
        assert summary["score"] == pytest.approx(10 / 12) and summary["all_empty"] == pytest.approx(10 / 12)
        assert summary["images"] == 3 and summary["failures"] == {} and summary["unmatched"] == []
        assert list(summary["classes"]) == ["1", "2", "3", "4", "all"]
        everything = summary["classes"]["all"]
        assert (everything["pairs"], everything["truth_defects"], everything["pred_defects"]) == (12, 2, 0)
        assert everything["precision"] is None and everything["dice_defects"] == 0.0  # nothing predicted
    elif suffix == ".png":
        chart = cv2.imread(str(out))
        assert chart is not None and chart.shape == (420, 1100, 3) and chart.std() > 10  # drawn, not blank
    else:
        pairs = pd.read_csv(out, keep_default_na=False)
        assert list(pairs.columns) == ["ImageId", "ClassId", "truth", "pred", "dice"] and len(pairs) == 12
        assert pairs["dice"].sum() == pytest.approx(10.0) and (pairs["truth"] != "").sum() == 2


@pytest.mark.parametrize("case", ["labels", "twice"])
def test_cli_evaluate_refuses_outputs_that_would_clobber(tmp_path: Path, folder: tuple[Path, Path], case: str) -> None:
    images, labels = folder
    before = labels.read_bytes()
    outs = [labels] if case == "labels" else [tmp_path / "e.json", tmp_path / "." / "e.json"]
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(labels), "--no-progress",
                                  *[a for out in outs for a in ("-o", str(out))]])
    assert res.exit_code == 1
    message = "is the --labels file: give another output name" if case == "labels" else "e.json is given twice"
    assert message in res.output.splitlines()[0], res.output
    assert labels.read_bytes() == before and not (tmp_path / "e.json").exists()


def test_cli_evaluate_writes_every_output_given(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    outs = [tmp_path / "e.json", tmp_path / "e.csv", tmp_path / "e.png"]
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(labels), "--no-progress",
                                  "--model", str(_model(tmp_path, [0.0] * 4)), "--backend", "torch",
                                  *[a for out in outs for a in ("-o", str(out))]])
    assert res.exit_code == 0, res.output
    assert all(f"wrote {out}" in res.output and out.stat().st_size > 0 for out in outs)


def test_plot_report_leaves_out_undefined_ratios(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    from steelfast.analysis.evaluate import plot_report

    images, labels = folder
    report = evaluate_folder(images, labels, _model(tmp_path, [2.0] * 4), backend="torch").report
    fig = plot_report(report)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["class 1", "class 2", "class 3", "class 4", "all"]
    heights = [b.get_height() for b in right.patches]
    assert len(heights) == 4 * 5 and sum(np.isnan(heights)) == int(report[["dice_defects", "fp_rate_empty",
                                                                             "precision", "recall"]].isna().sum().sum())


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("evaluation.txt", r"cannot tell what to write to .*evaluation\.txt: use \.json .* got suffix '\.txt'"),
        ("a_folder.json", r"a_folder\.json is a folder; give a file name"),
        ("a_file/e.json", r"cannot write .*a_file/e\.json: .*a_file is a file, not a folder"),
        ("a_file/deeper/e.png", r"cannot write .*deeper/e\.png: .*a_file is a file, not a folder"),
    ],
)
def test_cli_evaluate_output_checked_before_anything_else(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "a_folder.json").mkdir()
    (tmp_path / "a_file").write_text("")
    # No image folder, no labels, no model: the output is what is refused.
    res = runner.invoke(cli.app, ["evaluate", "--images", str(tmp_path / "none"), "--labels", str(tmp_path / "x.csv"),
                                  "-o", str(tmp_path / name), "--no-progress"])
    assert res.exit_code == 1
    assert re.search(match, res.output.splitlines()[0]), res.output


def test_cli_evaluate_expected_score_at_given_rates(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, _ = folder
    box = encode(np.pad(np.ones((50, 200), np.uint8), ((100, 106), (200, 1200))))
    labels = _labels(tmp_path / "all4.csv", [("img0.jpg", c, box) for c in (1, 2, 3, 4)])
    common = ["evaluate", "--images", str(images), "--labels", str(labels), "--no-progress",
              "--model", str(_model(tmp_path, [2.0] * 4)), "--backend", "torch"]
    res = runner.invoke(cli.app, [*common, "--prevalence", "0.1,0.2,0.4,0.3"])
    assert res.exit_code == 0, res.output
    # Nothing predicted: each class expects 1 - rate, as all-empty does.
    assert "expected at the class rates 0.100/0.200/0.400/0.300: 0.7500 (all-empty 0.7500, +0.0000)" in res.output
    bad = runner.invoke(cli.app, [*common, "--prevalence", "0.1,0.2"])
    assert bad.exit_code == 1
    assert bad.output.startswith("error: --prevalence: prevalence needs one share per class (4), got 2")


def test_cli_evaluate_missing_labels(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, _ = folder
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(tmp_path / "none.csv"),
                                  "--model", str(_model(tmp_path, [2.0] * 4)), "--no-progress"])
    assert res.exit_code == 1
    assert "none.csv" in res.output


def _labels(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]).to_csv(path, index=False)
    return path


def test_other_sizes_are_failures_not_scored(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in images.iterdir():
        (mixed / f.name).write_bytes(f.read_bytes())
    cv2.imwrite(str(mixed / "small.jpg"), np.zeros((128, 800), np.uint8))
    rows = [("small.jpg", 3, "200000 5000")]  # valid at 256x1600, past the end of a 128x800 image
    result = evaluate_folder(mixed, _labels(tmp_path / "l.csv", rows), _model(tmp_path, [2.0] * 4), backend="torch",
                             overlays=tmp_path / "ov")
    assert list(result.failures) == ["small.jpg"] and "128x800" in result.failures["small.jpg"]
    assert sorted(set(result.pairs["ImageId"])) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_labels_and_overlays_checked_before_any_image_is_segmented(
        tmp_path: Path, folder: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.analysis.evaluate as evaluate

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("segmented before the inputs were checked")

    monkeypatch.setattr(evaluate, "segment_folder", never)
    images, _ = folder
    bad = _labels(tmp_path / "bad.csv", [("img0.jpg", 5, "1 10")])
    with pytest.raises(ValueError, match=r"bad\.csv.*ClassId '5' is not one of 1, 2, 3, 4"):
        evaluate_folder(images, bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"\[Errno 20\] Not a directory"):
        evaluate_folder(images, _labels(tmp_path / "ok.csv", []), overlays=tmp_path / "file" / "ov")


def test_labelled_images_missing_from_the_folder_are_listed(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    extra = pd.concat([pd.read_csv(labels), pd.DataFrame([{"ImageId": "gone.jpg", "ClassId": 1, "EncodedPixels": "1 5"}])])
    path = tmp_path / "extra.csv"
    extra.to_csv(path, index=False)
    result = evaluate_folder(images, path, _model(tmp_path, [2.0] * 4), backend="torch")
    assert result.unmatched == ["gone.jpg"] and len(result.pairs) == 12
    # A folder of clean images against defect-only labels: every labelled image is elsewhere, and that is fine.
    clean = _labels(tmp_path / "clean.csv", [("x.jpg", 1, "1 10")])
    only_clean = evaluate_folder(images, clean, _model(tmp_path, [2.0] * 4), backend="torch")
    assert only_clean.unmatched == ["x.jpg"] and only_clean.score == 1.0
    res = runner.invoke(cli.app, ["evaluate", "--images", str(images), "--labels", str(path), "--model",
                                  str(_model(tmp_path, [2.0] * 4)), "--no-progress", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    assert "note: 1 labelled images are not in" in res.output and "gone.jpg" in res.output


def test_every_image_failing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    (tmp_path / "imgs" / "text.jpg").write_text("not an image")
    res = runner.invoke(cli.app, ["evaluate", "--images", str(tmp_path / "imgs"), "--labels",
                                  str(_labels(tmp_path / "l.csv", [])), "--model", str(_model(tmp_path, [2.0] * 4)),
                                  "--no-progress", "--backend", "torch"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith("error: no image of ")
    assert "could be scored: 2 failed (first: empty.jpg:" in res.output


def test_overlays_of_images_sharing_a_stem_keep_both(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.jpg").write_bytes((images / "img0.jpg").read_bytes())
    cv2.imwrite(str(two / "a.png"), cv2.imread(str(images / "img1.jpg"), cv2.IMREAD_GRAYSCALE))
    evaluate_folder(two, _labels(tmp_path / "l.csv", []), _model(tmp_path, [2.0] * 4), backend="torch",
                    overlays=tmp_path / "ov")
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["a.jpg.png", "a.png.png"]


@pytest.mark.parametrize(("name", "error", "match"), [
    ("e.parquet", ValueError, r"use \.json \(the summary\), \.csv .* or \.png \(the chart\)"),
    ("e", ValueError, r"got suffix ''"),
])
def test_save_refuses_other_suffixes(tmp_path: Path, folder: tuple[Path, Path], name: str, error: type,
                                     match: str) -> None:
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [2.0] * 4), backend="torch")
    with pytest.raises(error, match=match):
        result.save(tmp_path / name)
    assert not list(tmp_path.glob("e*"))


def test_expected_score_re_weighs_defect_and_clean_pairs(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [2.0] * 4), backend="torch")  # predicts nothing
    # Classes 1 and 3 have one defect image each (Dice 0) and clean images (Dice 1): 1 - rate.
    # Classes 2 and 4 have no defect among the three images: not estimable.
    est = result.expected_score((0.1, 0.2, 0.4, 0.3))
    assert est["per_class"] == pytest.approx({"1": 0.9, "3": 0.6}) and est["missing"] == [2, 4]
    assert est["score"] is None and est["all_empty"] == pytest.approx(0.75)
    assert result.to_dict((0.1, 0.2, 0.4, 0.3))["expected"] == est


def test_to_dict_matches_the_table(tmp_path: Path, folder: tuple[Path, Path]) -> None:
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [0.0] * 4), backend="torch")
    summary = result.to_dict()
    assert summary["score"] == result.score and summary["images"] == 3
    for key, row in result.report.iterrows():
        for column, value in row.items():
            got = summary["classes"][str(key)][column]
            assert (got is None) if pd.isna(value) else got == pytest.approx(value), (key, column)
    again = json.loads(result.save(tmp_path / "e.json").read_text())
    assert again == json.loads(json.dumps(summary))


def test_the_folder_is_listed_once(folder: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.analysis.evaluate as evaluate_mod
    import steelfast.inference.pipeline as pipeline_mod

    listed: list[Path] = []

    def counting(path):
        listed.append(Path(path))
        return real(path)

    real = evaluate_mod.list_folder
    monkeypatch.setattr(evaluate_mod, "list_folder", counting)
    monkeypatch.setattr(pipeline_mod, "list_folder", counting)
    images, labels = folder
    result = evaluate_folder(images, labels, _model(tmp_path, [2.0] * 4), backend="torch")
    assert listed == [images]  # the scored images are the ones matched against the labels
    assert len(result.pairs) == 4 * len(real(images))
