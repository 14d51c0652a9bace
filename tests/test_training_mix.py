"""SynthMix: real training images plus synthetic ones made of them, at a ratio, never of a scored image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steelfast.data.real import LabelledSet
from steelfast.rle import encode
from steelfast.training import crossval
from steelfast.training.gated import GatedTrainConfig
from steelfast.training.mix import SynthMix


def _set(n: int, seed: int = 0) -> LabelledSet:
    """n fully labelled images; the even ones carry a dark class-3 patch."""
    rng = np.random.default_rng(seed)
    images = rng.integers(90, 130, (n, 256, 1600), dtype=np.uint8)
    masks, presence = [], np.zeros((n, 4), bool)
    for i in range(n):
        m = np.zeros((4, 256, 1600), np.uint8)
        if i % 2 == 0:
            m[2, 50 + i : 120 + i, 200:600] = 1
            images[i][m[2] > 0] = 40
            presence[i, 2] = True
        masks.append(m)
    return LabelledSet([f"img{i}.jpg" for i in range(n)], images, presence, np.ones(n, bool), masks)


def _shapes(data: LabelledSet) -> pd.DataFrame:
    rows = [(data.ids[i], c + 1, encode(data.masks[i][c])) for i in range(len(data)) for c in range(4)
            if data.masks[i][c].any()]
    return pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])


@pytest.mark.parametrize(("ratio", "n_synth"), [(0.5, 2), (1.0, 4), (2.5, 10), (0.01, 1)])
def test_adds_synthetic_images_at_the_ratio(ratio: float, n_synth: int) -> None:
    data = _set(6)
    train = data.subset([0, 1, 2, 3])
    out = SynthMix(ratio, _shapes(data))(train, scored=data.ids[4:], seed=3)
    assert len(out) == 4 + n_synth and out.ids[:4] == train.ids
    assert out.full.all() and all(m is not None for m in out.masks)
    again = SynthMix(ratio, _shapes(data))(train, scored=data.ids[4:], seed=3)
    np.testing.assert_array_equal(out.images, again.images)  # seeded


@pytest.mark.parametrize("gate", [True, False])
def test_gate_marks_what_trains_the_gate(gate: bool) -> None:
    data = _set(6)
    mix = SynthMix(1.0, _shapes(data), gate=gate)
    out = mix(data.subset([0, 1, 2, 3]), scored=data.ids[4:], seed=0)
    assert out.gate[:4].all()  # the real images always train the gate
    assert (out.gate[4:] == gate).all() and len(out) == 8
    assert ("trains" in mix.describe()) == (not gate)
    assert out.subset([5, 0]).gate.tolist() == [gate, True]


def test_never_uses_a_scored_image_shape() -> None:
    data = _set(4)
    train = data.subset([0, 1])  # img0 has the class-3 example; the only shape left is a scored image's
    only_scored = _shapes(data)[lambda f: f["ImageId"] == "img2.jpg"]
    with pytest.raises(ValueError, match="no class has both a real shape and a real example"):
        SynthMix(1.0, only_scored)(train, scored=["img2.jpg", "img3.jpg"], seed=0)
    with pytest.raises(ValueError, match="holds 1 scored image.*'img0.jpg'"):
        SynthMix(1.0, _shapes(data))(train, scored=["img0.jpg"], seed=0)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"ratio": 0}, ValueError, "must be > 0, got 0"),
    ({"ratio": -1.0}, ValueError, r"synthetic ratio must be in \[0.0, 100.0\], got -1.0"),
    ({"ratio": True}, TypeError, "synthetic ratio must be a number.*True"),
    ({"ratio": "1"}, TypeError, "synthetic ratio must be a number.*'1'"),
    ({"ratio": 1.0, "sheets": "clean"}, ValueError, "sheets must be one of 'all', 'defect-free', got 'clean'"),
    ({"ratio": 1.0, "gate": "no"}, TypeError, "gate must be True or False, got str: 'no'"),
    ({"ratio": 1.0, "gate": 0}, TypeError, "gate must be True or False, got int: 0"),
])
def test_bad_settings(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        SynthMix(shapes=pd.DataFrame(columns=["ImageId", "ClassId", "EncodedPixels"]), **kwargs)


@pytest.mark.parametrize("old_format", [False, True])
def test_from_labels_reads_either_format(tmp_path, old_format: bool) -> None:
    data = _set(2)
    path = tmp_path / "train.csv"
    frame = _shapes(data)
    if old_format:  # four rows per image, empty where there is no defect
        rle = dict(zip(zip(frame["ImageId"], frame["ClassId"]), frame["EncodedPixels"]))
        frame = pd.DataFrame([(f"{i}_{c}", rle.get((i, c), "")) for i in data.ids for c in range(1, 5)],
                             columns=["ImageId_ClassId", "EncodedPixels"])
    frame.to_csv(path, index=False)
    mix = SynthMix.from_labels(0.5, path)
    assert mix.shapes["ImageId"].tolist() == ["img0.jpg"] and mix.describe()["shape_rows"] == 1


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seg = torch.nn.Conv2d(3, 4, 1)
        self.gate = torch.nn.Linear(3, 4)

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.seg(x), self.gate(x.mean(dim=(2, 3)))


def test_out_of_fold_mixes_each_fold_from_its_own_training_images(monkeypatch) -> None:
    data = _set(8)
    seen: list[list[str]] = []

    def fake_train(train, config, progress=None):
        seen.append(list(train.ids))
        return _Tiny().eval()

    monkeypatch.setattr(crossval, "train_gated", fake_train)
    folds = crossval.stratified_folds(data, 2)
    crossval.out_of_fold(data, GatedTrainConfig(epochs=1), folds, mix=SynthMix(0.5, _shapes(data)))
    assert len(seen) == 2
    for f, ids in enumerate(seen):
        real = [i for i in ids if not i.startswith("synth_")]
        assert real == [data.ids[i] for i in np.flatnonzero(folds != f)]
        assert len(ids) - len(real) == 2  # 0.5 x 4 real training images
