"""The main job on real JPEGs with the bundled default model: end to end against the model alone.

Input: up to 200 real Severstal JPEGs from ``../shared/data/severstal`` (``images/`` and
``test_images/``), copied into a temporary folder; skipped when the real data is absent.

* Reference ("model"): the same backend's ``predict_proba`` on the already decoded and
  normalised images, batch by batch as the Segmenter batches them: the pure model rate.
* Ours ("folder"): :func:`steelfast.segment_folder` over the folder: decode, model, gate,
  post-processing, RLE, all of it.
* Goal 1 (issue 12): the main job sustains at least 15 images/s on this 2-core CPU.
* Goal 2 (issue 13): the folder rate is at least 85 % of the pure model rate.

Run: ``python -m pytest bench/bench_real_folder.py -p no:cacheprovider --benchmark-enable -s``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import _MEANS, copy_real_jpegs, make_timed, speedup

from steelfast.images import read_gray, to_model_input
from steelfast.inference.pipeline import segment_folder
from steelfast.inference.segmenter import Segmenter

GROUP = "default-model-real-jpegs"
N_IMAGES = 200


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_real_jpegs(tmp_path_factory, N_IMAGES)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()  # the bundled default model, backend="auto", as the main job builds it


def test_pure_model(benchmark, segmenter: Segmenter, folder: Path) -> None:
    grays = [read_gray(p) for p in sorted(folder.iterdir())]
    x = to_model_input(np.stack(grays), segmenter.mean, segmenter.std, segmenter.channels)
    bs = segmenter.batch_size

    def run() -> int:
        for start in range(0, len(x), bs):
            segmenter.backend.predict_proba(x[start : start + bs])
        return len(x)

    n = make_timed(benchmark, 2)(GROUP, "model", run)
    if (GROUP, "model") in _MEANS:
        _MEANS[(GROUP, "model")] /= n
    assert n == len(grays)


def test_segment_folder(benchmark, segmenter: Segmenter, folder: Path) -> None:
    n = len(list(folder.iterdir()))
    frame = make_timed(benchmark, 2)(GROUP, "folder", lambda: segment_folder(folder, segmenter=segmenter))
    if (GROUP, "folder") in _MEANS:
        _MEANS[(GROUP, "folder")] /= n
        print(f"\nmain job: {1 / _MEANS[(GROUP, 'folder')]:.1f} images/s over {n} real JPEGs")
    assert len(frame) == 4 * n and not frame.attrs["failures"]
    assert frame.groupby("ImageId").size().eq(4).all()


def test_goal_main_job_15_images_per_second() -> None:
    share = speedup(GROUP, "folder", "model", stat="mean")  # skips when timing is off
    rate = 1 / _MEANS[(GROUP, "folder")]
    print(f"\nmain job {rate:.1f} images/s, model alone {1 / _MEANS[(GROUP, 'model')]:.1f}; share {share:.1%}")
    assert rate >= 15.0, f"main job {rate:.1f} images/s (goal 15)"


def test_goal_folder_85_percent_of_model() -> None:
    share = speedup(GROUP, "folder", "model", stat="mean")
    assert share >= 0.85, f"segment_folder reaches only {share:.1%} of the model's images/s (goal 85 %)"
