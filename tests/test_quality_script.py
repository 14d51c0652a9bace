"""bench/train_quality.py end to end on a tiny dataset: train, TTA re-tuning inside the budget, evaluation only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import bench_script

from steelfast.checkpoint import read_metadata


def _script():
    return bench_script("train_quality")


@pytest.mark.slow
def test_train_with_tta_then_evaluate_only(tmp_path: Path) -> None:
    script = _script()
    common = ["--n-train", "16", "--n-val", "4", "--no-progress"]
    run = tmp_path / "run"
    assert script.main([*common, "--out", str(run), "--n-test", "4", "--budget-min", "0.7", "--epochs", "1",
                        "--crop-width", "128", "--batch-size", "8", "--tta"]) == 0
    results = json.loads((run / "results.json").read_text())
    post = results["postprocess_tta"]
    assert post["tta"] is True and len(post["thresholds"]) == 4 and 0 <= post["validation_score"] <= 1
    assert 0 <= results["test"]["score"] <= 1 and results["within_budget"]
    saved = read_metadata(run / "best.safetensors")["postprocess"]
    assert saved == {k: post[k] for k in ("thresholds", "min_areas", "tta")}  # inference will average flips

    out = tmp_path / "eval"
    assert script.main([*common, "--out", str(out), "--data", str(run / "data"),
                        "--evaluate", str(run / "best.safetensors")]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["tta"] is False and evaluation["postprocess"] == saved
    assert evaluation["test"]["images"] == 4


def test_evaluate_needs_held_out_images(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no test_labels.csv"):
        _script().main(["--out", str(tmp_path), "--data", str(tmp_path), "--evaluate", "x.safetensors"])
