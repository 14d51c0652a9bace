"""Pseudo-labels: a teacher's confident gate calls on unlabelled images, each fold's teacher trained on that fold only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from steelfast.checkpoint import save_checkpoint
from steelfast.data.real import LabelledSet
from steelfast.efficientnet import GatedUNet
from steelfast.training import crossval, gated
from steelfast.training.gated import GatedTrainConfig
from steelfast.training.pseudo import (
    PseudoLabels,
    check_rule,
    load_teacher,
    load_unlabelled,
    pseudo_label,
)

H, W = 32, 64


class GateTable(torch.nn.Module):
    """A teacher whose gate probabilities are a fixed table, one row per image in call order."""

    def __init__(self, probs: list[list[float]]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        p = torch.tensor(probs, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        self.logits = torch.log(p / (1 - p)).float()
        self.pos = 0

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        gate = self.logits[self.pos : self.pos + n]
        self.pos += n
        return torch.zeros(n, 4, *x.shape[2:]), gate


PROBS = [
    [0.01, 0.02, 0.01, 0.04],  # every class confidently absent: a defect-free pseudo-label
    [0.99, 0.01, 0.01, 0.01],  # class 1 present
    [0.50, 0.01, 0.01, 0.01],  # class 1 unsure: left out
    [0.05, 0.95, 0.01, 0.05],  # on the bounds: absent, present (inclusive)
    [0.01, 0.01, 0.30, 0.01],  # class 3 unsure: left out
]


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W), dtype=np.uint8)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_keeps_only_confident_images(batch_size: int) -> None:
    images = _images(len(PROBS))
    ids = [f"u{i}.jpg" for i in range(len(PROBS))]
    got = pseudo_label(GateTable(PROBS), images, ids, batch_size=batch_size)
    assert got.ids == ["u0.jpg", "u1.jpg", "u3.jpg"]
    np.testing.assert_array_equal(got.images, images[[0, 1, 3]])
    np.testing.assert_array_equal(got.presence, [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert not got.full.any() and got.masks == [None, None, None]  # weak labels: presence only
    info = got.source["pseudo_labels"]
    assert (info["unlabelled"], info["kept"], info["defect_free"], info["weak"]) == (5, 3, 1, 2)
    assert info["images_per_class"] == {"1": 1, "2": 1, "3": 0, "4": 0}


@pytest.mark.parametrize(("negative", "positive", "kept"), [
    (0.05, 0.95, ["u0.jpg", "u1.jpg", "u3.jpg"]),
    (0.04, 0.95, ["u0.jpg", "u1.jpg"]),           # u3's 0.05 is no longer absent
    (0.30, 0.50, ["u0.jpg", "u1.jpg", "u2.jpg", "u3.jpg", "u4.jpg"]),
    (0.0, 1.0, []),
])
def test_rule_bounds(negative: float, positive: float, kept: list[str]) -> None:
    got = pseudo_label(GateTable(PROBS), _images(5), [f"u{i}.jpg" for i in range(5)], negative=negative,
                       positive=positive)
    assert got.ids == kept and len(got.images) == len(kept)


@pytest.mark.parametrize(("negative", "positive", "rule"), [
    (None, None, (0.05, 0.95)), (None, 0.9, (0.05, 0.9)), (0.1, None, (0.1, 0.95)), (0, 1, (0.0, 1.0)),
])
def test_rule_defaults(negative, positive, rule: tuple[float, float]) -> None:
    assert check_rule(negative, positive) == rule
    pseudo = PseudoLabels(_images(1), ["u.jpg"], negative, positive)
    assert (pseudo.negative, pseudo.positive) == rule


@pytest.mark.parametrize(("negative", "positive", "exc", "match"), [
    (0.5, 0.5, ValueError, r"negative must be below positive, got negative=0.5, positive=0.5"),
    (0.9, 0.1, ValueError, "negative must be below positive"),
    (-0.1, 0.9, ValueError, r"pseudo-label negative must be in \[0.0, 1.0\], got -0.1"),
    (0.1, 1.5, ValueError, r"pseudo-label positive must be in \[0.0, 1.0\], got 1.5"),
    ("low", 0.9, TypeError, "pseudo-label negative must be a number"),
])
def test_bad_rule(negative, positive, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        check_rule(negative, positive)
    with pytest.raises(exc, match=match):
        pseudo_label(GateTable(PROBS), _images(5), [str(i) for i in range(5)], negative=negative, positive=positive)


@pytest.mark.parametrize(("images", "ids", "exc", "match"), [
    (np.zeros((2, H, W), np.float32), ["a", "b"], TypeError, "images must be a uint8 NumPy array, got ndarray of float32"),
    ([[0]], ["a"], TypeError, "images must be a uint8 NumPy array, got list"),
    (np.zeros((H, W), np.uint8), ["a"], ValueError, r"images must be \(N, H, W\) grey images, got shape \(32, 64\)"),
    (np.zeros((2, H, W), np.uint8), ["a"], ValueError, "ids must name every image: 1 ids for 2 images"),
])
def test_bad_images(images, ids, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        pseudo_label(GateTable(PROBS), images, ids)


def _labelled(n: int) -> LabelledSet:
    images = _images(n, 1)
    presence = np.zeros((n, 4), bool)
    presence[::2, 2] = True
    masks = [np.zeros((4, H, W), np.uint8) for _ in range(n)]
    return LabelledSet([f"img{i}.jpg" for i in range(n)], images, presence, np.ones(n, bool), masks)


def test_call_trains_a_teacher_on_the_given_set_only(monkeypatch) -> None:
    train = _labelled(4)
    taught: list[list[str]] = []

    def teacher(data, config, progress=None):
        taught.append(list(data.ids))
        return GateTable(PROBS).eval()

    monkeypatch.setattr(gated, "train_gated", teacher)
    lines: list[str] = []
    pseudo = PseudoLabels(_images(5), [f"u{i}.jpg" for i in range(5)])
    out = pseudo(train, GatedTrainConfig(epochs=1), progress=lines.append)
    assert taught == [train.ids]
    assert out.ids == [*train.ids, "u0.jpg", "u1.jpg", "u3.jpg"]
    assert out.full.tolist() == [True] * 4 + [False] * 3
    assert lines[-1] == "pseudo-labels: 3 of 5 images kept (1 defect-free, 2 weak)"


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"negative": 0.9, "positive": 0.2}, ValueError, "negative must be below positive"),
    ({"ids": ["a"]}, ValueError, "ids must name every image: 1 ids for 5 images"),
    ({"images": np.zeros((5, H, W), np.float32)}, TypeError, r"images must be a uint8 \(N, H, W\) NumPy array, got ndarray of float32"),
    ({"images": np.zeros((H, W), np.uint8)}, TypeError, r"got ndarray of uint8 \(32, 64\)"),
])
def test_pseudo_labels_bad_settings(kwargs: dict, exc: type, match: str) -> None:
    options = {"images": _images(5), "ids": [f"u{i}.jpg" for i in range(5)], **kwargs}
    with pytest.raises(exc, match=match):
        PseudoLabels(**options)


def test_an_unlabelled_image_that_is_also_labelled_is_refused() -> None:
    pseudo = PseudoLabels(_images(2), ["img1.jpg", "new.jpg"])
    with pytest.raises(ValueError, match=r"unlabelled images are also labelled training images: \['img1.jpg'\]"):
        pseudo(_labelled(4), GatedTrainConfig(epochs=1))


def test_out_of_fold_teachers_never_see_the_scored_fold(monkeypatch) -> None:
    data = _labelled(8)
    teachers: list[list[str]] = []
    students: list[list[str]] = []

    def teacher(train, config, progress=None):
        teachers.append(list(train.ids))
        return GateTable([[0.01] * 4] * 3).eval()

    def student(train, config, progress=None):
        students.append(list(train.ids))
        return GateTable([[0.5] * 4] * len(data)).eval()

    monkeypatch.setattr(gated, "train_gated", teacher)
    monkeypatch.setattr(crossval, "train_gated", student)
    folds = crossval.stratified_folds(data, 2)
    pseudo = PseudoLabels(_images(3, 2), ["u0.jpg", "u1.jpg", "u2.jpg"])
    crossval.out_of_fold(data, GatedTrainConfig(epochs=1), folds, pseudo=pseudo)
    assert len(teachers) == len(students) == 2
    for f in range(2):
        fold_train = [data.ids[i] for i in np.flatnonzero(folds != f)]
        assert teachers[f] == fold_train
        assert students[f] == [*fold_train, "u0.jpg", "u1.jpg", "u2.jpg"]


def test_load_unlabelled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (256, 1600), dtype=np.uint8))
    images, ids = load_unlabelled(tmp_path)
    assert ids == ["a.png", "b.png"] and images.shape == (2, 256, 1600) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_GRAYSCALE))


def test_load_unlabelled_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images found"):
        load_unlabelled(tmp_path)
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((10, 20), np.uint8))
    with pytest.raises(ValueError, match=r"small.png: size 10x20, expected 256x1600"):
        load_unlabelled(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_unlabelled(tmp_path / "nowhere")


def _no_training(monkeypatch) -> list:
    calls: list = []

    def record(train, config, progress=None):
        calls.append(train.ids)
        raise AssertionError("no model may train")

    monkeypatch.setattr(gated, "train_gated", record)
    monkeypatch.setattr(crossval, "train_gated", record)
    return calls


def test_other_sized_unlabelled_images_are_refused_before_the_teacher_trains(monkeypatch) -> None:
    calls = _no_training(monkeypatch)
    pseudo = PseudoLabels(np.zeros((2, H, W + 32), np.uint8), ["u0.jpg", "u1.jpg"])
    with pytest.raises(ValueError, match=r"unlabelled images are \(32, 96\), the training images \(32, 64\)"):
        pseudo(_labelled(4), GatedTrainConfig(epochs=1))
    assert calls == []


def test_out_of_fold_refuses_a_scored_image_among_the_unlabelled_before_training(monkeypatch) -> None:
    calls = _no_training(monkeypatch)
    data = _labelled(8)
    folds = crossval.stratified_folds(data, 2)
    scored_in_fold_0 = data.ids[int(np.flatnonzero(folds == 0)[0])]
    pseudo = PseudoLabels(_images(2, 3), ["u0.jpg", scored_in_fold_0])
    with pytest.raises(ValueError, match=f"unlabelled images are also labelled training images: \\['{scored_in_fold_0}'\\]"):
        crossval.out_of_fold(data, GatedTrainConfig(epochs=1), folds, pseudo=pseudo)
    assert calls == []


def test_call_with_a_given_teacher_trains_none(monkeypatch) -> None:
    calls = _no_training(monkeypatch)
    train = _labelled(4)
    lines: list[str] = []
    out = PseudoLabels(_images(5), [f"u{i}.jpg" for i in range(5)])(
        train, GatedTrainConfig(epochs=1), progress=lines.append, teacher=GateTable(PROBS).eval())
    assert calls == []
    assert out.ids == [*train.ids, "u0.jpg", "u1.jpg", "u3.jpg"]
    assert lines == ["pseudo-labels: 3 of 5 images kept (1 defect-free, 2 weak)"]


def _saved_teacher(path: Path, ids: list[str] | None, config: dict | None, digest: str | None = None) -> Path:
    training = {k: v for k, v in (("ids", ids), ("config", config), ("digest", digest)) if v is not None}
    return save_checkpoint(path / "model_0.safetensors", GatedUNet(), {"training": training})


@pytest.mark.parametrize("run_only", [{}, {"threads": 1, "device": "cpu"}])
def test_load_teacher_accepts_the_same_images_and_settings(tmp_path: Path, run_only: dict) -> None:
    from dataclasses import asdict

    train = _labelled(4)
    saved = GatedTrainConfig(epochs=3, seed=2, threads=8, device="cuda")
    path = _saved_teacher(tmp_path, list(train.ids), asdict(saved))
    config = GatedTrainConfig(epochs=3, seed=2, **run_only)  # where it runs may differ
    teacher = load_teacher(path, train, config)
    assert isinstance(teacher, GatedUNet)


@pytest.mark.parametrize(("ids", "config", "match"), [
    (None, {}, "its metadata has no training.ids or training.config"),
    (["img0.jpg"], None, "its metadata has no training.ids or training.config"),
    (["img0.jpg", "img1.jpg", "other.jpg", "img3.jpg"], {},
     r"trained on other images: 4 ids against 4, first difference at position 2: 'other.jpg' against 'img2.jpg'"),
    (["img0.jpg", "img1.jpg"], {}, r"2 ids against 4, first difference at position 2: None against 'img2.jpg'"),
    (["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"], {"epochs": 5}, "was trained with epochs=5, this run has 3"),
    (["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"], {"frozen_blocks": 0},
     "was trained with frozen_blocks=0, this run has 1"),
    (["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"], {"amp": "bf16"}, "was trained with amp='bf16', this run has 'off'"),
])
def test_load_teacher_refuses_another_training_set_or_recipe(tmp_path: Path, ids, config, match: str) -> None:
    from dataclasses import asdict

    wanted = GatedTrainConfig(epochs=3)
    path = _saved_teacher(tmp_path, ids, None if config is None else {**asdict(wanted), **config})
    with pytest.raises(ValueError, match=match):
        load_teacher(path, _labelled(4), wanted)


@pytest.mark.parametrize(("amp", "accepted"), [("off", True), ("bf16", False)])
def test_load_teacher_from_before_amp_was_recorded_trained_in_float32(tmp_path: Path, amp: str, accepted: bool) -> None:
    from dataclasses import asdict

    train, config = _labelled(4), GatedTrainConfig(epochs=3, amp=amp)
    recorded = {k: v for k, v in asdict(config).items() if k != "amp"}  # metadata written before the field
    path = _saved_teacher(tmp_path, list(train.ids), recorded)
    if accepted:
        assert isinstance(load_teacher(path, train, config), GatedUNet)
    else:
        with pytest.raises(ValueError, match="was trained with amp='off', this run has 'bf16'"):
            load_teacher(path, train, config)


def test_load_teacher_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_teacher(tmp_path / "model_9.safetensors", _labelled(4), GatedTrainConfig())


@pytest.mark.parametrize("same_data", [True, False])
def test_load_teacher_checks_a_recorded_digest(tmp_path: Path, same_data: bool) -> None:
    from dataclasses import asdict

    train, config = _labelled(4), GatedTrainConfig(epochs=3)
    other = _labelled(4)
    other.images[0, 0, 0] ^= 1  # same ids, another image
    path = _saved_teacher(tmp_path, list(train.ids), asdict(config), (train if same_data else other).digest())
    if same_data:
        assert isinstance(load_teacher(path, train, config), GatedUNet)
    else:
        with pytest.raises(ValueError,
                           match=r"trained on the same ImageIds but other images, labels, masks, gate marks \(--synth"):
            load_teacher(path, train, config)


@pytest.mark.parametrize("area_weight", [0.0, 0.2])
def test_load_teacher_counts_areas_only_where_they_train(tmp_path: Path, area_weight: float) -> None:
    """A teacher recorded without areas (from before they existed, or trained without the area loss)
    still teaches a set that has areas when the run does not use them; with the area loss it does not."""
    from dataclasses import asdict

    train, config = _labelled(4), GatedTrainConfig(epochs=3, area_weight=area_weight)
    train.areas[0] = [0.0, 0.0, 500.0, 0.0]
    path = _saved_teacher(tmp_path, list(train.ids), asdict(config), train.digest(areas=False))
    if area_weight == 0:
        assert isinstance(load_teacher(path, train, config), GatedUNet)
    else:
        with pytest.raises(ValueError, match=r"gate marks \(--synth-maps-only\) or areas \(--area-weight\)"):
            load_teacher(path, train, config)
