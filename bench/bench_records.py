"""The cost of defect records next to the main job, on real JPEGs with the bundled default model.

Input: up to 200 real Severstal JPEGs from ``../shared/data/severstal`` (``images/`` and
``test_images/``), copied into a temporary folder; skipped when the real data is absent.

* Reference ("csv"): the main job, :func:`steelfast.inference.run.segment_to_file` writing the
  submission CSV (decode, model, post-processing, RLE, writer).
* "json" and "coco": the same call writing the defect records (JSON Lines, COCO) instead.
* "encode" vs "records-json"/"records-coco": the post-processing alone on the probabilities of
  the first 16 images, kept in memory: the CSV's :meth:`Segmenter.encode` against
  :meth:`Segmenter.encode_records` plus serializing the records (``to_json`` + ``json.dumps``; for
  COCO also :func:`steelfast.rle.to_coco` per defect). Their difference is the work the records
  add, free of the model's noise.
* Goal (issue 14): the records cost at most 10 % of the main job's time: the added post-processing
  and serialization per image, over the main job's time per image, both from this run. The whole
  jobs' ratio (json or coco job over csv job) is printed too; it carries the model's noise.

Run: ``python -m pytest bench/bench_records.py -p no:cacheprovider --benchmark-enable -s``
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import _MEANS, copy_real_jpegs, make_timed

from steelfast.images import read_gray
from steelfast.inference.run import segment_to_file
from steelfast.inference.segmenter import Segmenter
from steelfast.rle import to_coco

GROUP_JOB = "records-vs-main-job"
GROUP_POST = "records-post-processing"
N_IMAGES = 200
N_PROBS = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_real_jpegs(tmp_path_factory, N_IMAGES)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(compile=False)  # the bundled default model, as the main job builds it for < 500 images


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_job(benchmark, segmenter: Segmenter, folder: Path, tmp_path: Path, suffix: str) -> None:
    name = {".csv": "csv", ".jsonl": "json", ".json": "coco"}[suffix]
    out = tmp_path / f"out{suffix}"
    n = len(list(folder.iterdir()))

    def run():
        return segment_to_file(folder, out, segmenter=segmenter, overwrite=True, progress=False)

    summary = make_timed(benchmark, 3)(GROUP_JOB, name, run)
    if (GROUP_JOB, name) in _MEANS:
        _MEANS[(GROUP_JOB, name)] /= n
        print(f"\n{name} job: {1 / _MEANS[(GROUP_JOB, name)]:.2f} images/s over {n} real JPEGs")
    assert summary.images == n and not summary.failures


@pytest.fixture(scope="module")
def probs(segmenter: Segmenter, folder: Path) -> list:
    grays = [read_gray(p) for p in sorted(folder.iterdir())[:N_PROBS]]
    return [(segmenter.predict_proba([g]), [g.shape]) for g in grays]


def coco_annotations(record) -> list[dict]:
    shape = (record.height, record.width)
    return [{"category_id": d.class_id, "segmentation": to_coco(d.rle, shape), "bbox": list(d.bbox),
             "area": d.area, "score": d.score_mean, "score_max": d.score_max} for d in record.defects]


@pytest.mark.parametrize("name", ["encode", "records-json", "records-coco"])
def test_post_processing(benchmark, segmenter: Segmenter, probs: list, name: str) -> None:
    def run() -> list:
        out = []
        for groups, shapes in probs:
            if name == "encode":
                out.append(segmenter.encode(groups, shapes)[0])
                continue
            record = segmenter.encode_records(groups, shapes)[0]
            text = json.dumps(record.to_json())
            if name == "records-coco":
                text = json.dumps(coco_annotations(record))
            out.append((list(record.rles), text))
        return out

    result = make_timed(benchmark, 20)(GROUP_POST, name, run)
    if (GROUP_POST, name) in _MEANS:
        _MEANS[(GROUP_POST, name)] /= len(probs)
    texts = result if name == "encode" else [r[0] for r in result]
    assert texts == [segmenter.encode(g, s)[0] for g, s in probs]  # the records carry the CSV's RLE


@pytest.mark.parametrize("fmt", ["json", "coco"])
def test_goal_records_cost_at_most_10_percent(fmt: str) -> None:
    keys = [(GROUP_JOB, "csv"), (GROUP_JOB, fmt), (GROUP_POST, "encode"), (GROUP_POST, f"records-{fmt}")]
    if any(k not in _MEANS for k in keys):
        pytest.skip("no timings in this run (benchmarks disabled or filtered)")
    main = _MEANS[(GROUP_JOB, "csv")]
    added = _MEANS[(GROUP_POST, f"records-{fmt}")] - _MEANS[(GROUP_POST, "encode")]
    job = _MEANS[(GROUP_JOB, fmt)] / main - 1.0
    print(f"\n{fmt}: records add {added * 1e3:.2f} ms per image = {added / main:.1%} of the main job's "
          f"{main * 1e3:.1f} ms per image; whole {fmt} job vs csv job: {job:+.1%}")
    assert added / main <= 0.10, f"{fmt} records cost {added / main:.1%} of the main job (goal <= 10 %)"
