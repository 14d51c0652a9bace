"""steelfast.training: folds, the gated trainer and out-of-fold CV (its command: test_cli_model.py)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from training_helpers import gated_set

from steelfast.data.real import LabelledSet
from steelfast.efficientnet import GatedUNet
from steelfast.severstal import PREVALENCE
from steelfast.training.crossval import (
    OutOfFold,
    cross_validate,
    fit_gated,
    out_of_fold,
    stratified_folds,
)
from steelfast.training.gate_tuning import CLASS_OFF, GateChoice
from steelfast.training.gated import GatedTrainConfig, predict_set, train_gated


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (5, 2)])
def test_folds_are_stratified_and_seeded(k: int, seed: int) -> None:
    data = gated_set(20, 10)
    folds = stratified_folds(data, k, seed=seed)
    assert sorted(set(folds.tolist())) == list(range(k))
    for full in (True, False):
        for present in (True, False):
            members = folds[(data.full == full) & (data.presence[:, 2] == present)]
            counts = np.bincount(members, minlength=k)
            assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(folds, stratified_folds(data, k, seed=seed))


@pytest.mark.parametrize(("k", "exc", "match"), [(1, ValueError, "folds must be between 2"),
                                                   (30, ValueError, "folds must be between 2"),
                                                   (2.0, TypeError, "folds must be a positive int")])
def test_bad_folds(k: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        stratified_folds(gated_set(4, 2), k)  # type: ignore[arg-type]


def test_training_needs_a_fully_labelled_image() -> None:
    with pytest.raises(ValueError, match="at least one fully labelled image"):
        train_gated(gated_set(0, 3), GatedTrainConfig(epochs=1, pretrained=False))


class _TinyGated(torch.nn.Module):
    """The smallest network with GatedUNet's training interface."""

    def __init__(self) -> None:
        super().__init__()
        self.seg = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.gate = torch.nn.Linear(3, 4)

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.seg(x), self.gate(x.mean(dim=(2, 3)))


def test_trains_another_network_with_forward_both() -> None:
    net = _TinyGated()
    before = [p.detach().clone() for p in net.parameters()]
    out = train_gated(gated_set(2, 1), GatedTrainConfig(epochs=1, batch_size=3, pretrained=False), model=net)
    assert out is net and not out.training
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # every parameter trained
    seg, gate = predict_set(out, gated_set(1, 0).images)
    assert seg.shape == (1, 4, 256, 1600) and seg.dtype == np.uint8 and gate.shape == (1, 4)


def test_maps_only_images_do_not_train_the_gate() -> None:
    data = gated_set(2, 0)
    data.gate[:] = False  # e.g. the synthetic images of SynthMix(gate=False), here all of them
    net = _TinyGated()
    gate_before = [p.detach().clone() for p in net.gate.parameters()]
    seg_before = [p.detach().clone() for p in net.seg.parameters()]
    train_gated(data, GatedTrainConfig(epochs=1, batch_size=2, pretrained=False), model=net)
    assert all(torch.equal(a, b) for a, b in zip(gate_before, net.gate.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(seg_before, net.seg.parameters()))


@pytest.mark.parametrize("gated_rows", [[True, True, True], [True, False, True], [False, False, False]])
def test_loss_takes_the_gate_term_over_the_gated_images(gated_rows: list[bool]) -> None:
    import torch.nn.functional as F

    import steelfast.training.gated as gated

    g = torch.Generator().manual_seed(0)
    seg, masks = torch.randn(3, 4, 8, 8, generator=g), (torch.rand(3, 4, 8, 8, generator=g) > 0.5).float()
    gate, presence = torch.randn(3, 4, generator=g), (torch.rand(3, 4, generator=g) > 0.5).float()
    full, weight = torch.tensor([False, False, False]), torch.ones(3, 4)  # no Dice term: the BCE parts alone
    rows = torch.tensor(gated_rows)
    got = gated._loss(seg, gate, masks, weight, presence, full, 0.5, rows)
    pix = F.binary_cross_entropy_with_logits(seg, masks)
    gate_term = F.binary_cross_entropy_with_logits(gate[rows], presence[rows]) if rows.any() else 0.0
    assert float(got) == pytest.approx(float(pix + 0.5 * gate_term), rel=1e-6)


@pytest.mark.parametrize("area_weight", [0.0, 0.2, 3.0])
def test_loss_adds_the_area_term_over_weak_present_classes_with_known_areas(area_weight: float) -> None:
    import torch.nn.functional as F

    import steelfast.training.gated as gated

    g = torch.Generator().manual_seed(1)
    seg, masks = torch.randn(4, 4, 8, 8, generator=g), torch.zeros(4, 4, 8, 8)
    gate = torch.randn(4, 4, generator=g)
    presence = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)
    full = torch.tensor([True, False, False, False])  # no Dice term: the full image has no defect pixel
    nan = float("nan")
    areas = torch.tensor([[9.0, nan, 9.0, nan],  # full: its masks rule, never its areas
                          [20.0, 5.0, 0.0, 0.0],  # weak: classes 1 and 2 count
                          [nan, nan, nan, 40.0],  # weak: class 3 unknown, class 4 counts
                          [0.0, 0.0, 0.0, 0.0]])  # weak with class 1 present but area 0 (flags): skipped
    weight = torch.where(full[:, None], torch.ones_like(presence), 1.0 - presence)
    got = gated._loss(seg, gate, masks, weight, presence, full, 0.5, None, areas, area_weight)
    base = gated._loss(seg, gate, masks, weight, presence, full, 0.5)
    soft = torch.sigmoid(seg).sum(dim=(2, 3))
    pairs = [(1, 0), (1, 1), (2, 3)]
    term = sum(abs(float(torch.log1p(soft[n, c])) - np.log1p(float(areas[n, c]))) for n, c in pairs) / len(pairs)
    assert float(base) == pytest.approx(float((F.binary_cross_entropy_with_logits(seg, masks, reduction="none")
                                                .mean(dim=(2, 3)) * weight).sum() / weight.sum()
                                               + 0.5 * F.binary_cross_entropy_with_logits(gate, presence)), rel=1e-6)
    assert float(got) == pytest.approx(float(base) + area_weight * term, rel=1e-6)


def test_the_area_loss_pulls_a_weak_map_towards_its_known_area() -> None:
    """A weak image whose class-3 box covers 24,000 px: trained with the area loss, its class-3 map's
    soft area ends nearer that than the same training without it (same start, seed and batches),
    and the maps of the other classes, whose areas are unknown, are exactly the same."""
    import copy

    from steelfast.images import to_model_input
    from steelfast.training.gated import NORMALIZATION

    data = gated_set(1, 2)  # image 2 is weak and holds the box
    data.areas[2, 2] = 24000.0
    torch.manual_seed(0)
    start = _TinyGated()  # starts near p = 0.5 everywhere: soft areas near 200,000 px
    x = torch.from_numpy(to_model_input(data.images[2:3], NORMALIZATION["mean"], NORMALIZATION["std"], 3))

    def maps(area_weight: float) -> torch.Tensor:
        net = copy.deepcopy(start)
        train_gated(data, GatedTrainConfig(epochs=4, batch_size=3, lr=1e-2, pretrained=False,
                                           area_weight=area_weight), model=net)
        with torch.no_grad():
            return torch.sigmoid(net.forward_both(x)[0][0])

    without, with_area = maps(0.0), maps(1.0)
    gap = [abs(float(torch.log1p(m[2].sum())) - np.log1p(24000.0)) for m in (without, with_area)]
    assert gap[1] < gap[0] - 0.1
    for c in (0, 1, 3):
        assert torch.equal(without[c], with_area[c])


def test_the_area_loss_needs_a_known_area() -> None:
    with pytest.raises(ValueError, match=r"area_weight=0.2 needs weak images with known pixel areas .*none has one"):
        train_gated(gated_set(2, 2), GatedTrainConfig(epochs=1, pretrained=False, area_weight=0.2))


def test_a_given_gated_unet_keeps_its_frozen_blocks() -> None:
    net = GatedUNet(scale=0.5)
    stem = [p.detach().clone() for p in net.encoder.stem.parameters()]
    out = train_gated(gated_set(2, 0), GatedTrainConfig(epochs=1, batch_size=2, pretrained=False, frozen_blocks=1),
                      model=net)
    assert out is net
    assert all(torch.equal(a, b) for a, b in zip(stem, net.encoder.stem.parameters()))  # frozen
    assert not any(p.requires_grad for p in net.encoder.blocks[0].parameters())


def test_another_network_needs_forward_both() -> None:
    with pytest.raises(TypeError, match="forward_both.*Conv2d"):
        train_gated(gated_set(2, 0), GatedTrainConfig(epochs=1), model=torch.nn.Conv2d(3, 4, 1))


@pytest.mark.parametrize(("field", "value", "exc", "match"), [
    ("epochs", 0, ValueError, "epochs"), ("lr", 2.0, ValueError, "lr"),
    ("frozen_blocks", -1, ValueError, "frozen_blocks"), ("device", 0, TypeError, "device must be a str.*got 0"),
    ("device", "tpu", ValueError, "device must be.*'tpu'"),
    ("amp", "fp8", ValueError, "amp must be 'auto', 'bf16', 'fp16' or 'off', got 'fp8'"),
    ("area_weight", -0.5, ValueError, "area_weight"),
])
def test_bad_config(field: str, value: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        train_gated(gated_set(2, 0), GatedTrainConfig(**{field: value, "pretrained": False}))


@pytest.mark.parametrize("device", ["cpu", pytest.param("auto", marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="'auto' is the CPU only without CUDA"))])
def test_fp16_autocast_needs_cuda(device: str) -> None:
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device; use 'bf16' or 'off' on the CPU"):
        GatedTrainConfig(amp="fp16", device=device).validate()


def test_amp_must_be_text() -> None:
    with pytest.raises(TypeError, match=r"amp must be a str \('auto', 'bf16', 'fp16' or 'off'\), got None"):
        GatedTrainConfig(amp=None).validate()


@pytest.mark.parametrize(("amp", "native_bf16", "autocast"), [
    ("off", True, "float32"), ("bf16", False, "bfloat16"), ("auto", True, "bfloat16"), ("auto", False, "float32")])
def test_resolved_names_the_precision_training_runs_in(amp: str, native_bf16: bool, autocast: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast._device as device_module

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert GatedTrainConfig(amp=amp, device="cpu").resolved() == {"device": "cpu", "autocast": autocast}


def test_resolved_checks_the_config() -> None:
    with pytest.raises(ValueError, match="amp must be 'auto', 'bf16', 'fp16' or 'off', got 'fp8'"):
        GatedTrainConfig(amp="fp8").resolved()


class _DtypeSpy(_TinyGated):
    """A tiny gated network that records the dtype its convolution computes in."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg, gate = super().forward_both(x)
        self.dtypes.add(seg.dtype)
        return seg, gate


@pytest.mark.parametrize(("amp", "dtype"), [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_amp_runs_the_forward_pass_in_its_dtype(amp: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.training.gated as gated

    loss_dtypes: set[torch.dtype] = set()

    def spy_loss(*args, **kwargs):
        loss_dtypes.update(a.dtype for a in args[:2])  # the logits the loss gets
        out = real_loss(*args, **kwargs)
        loss_dtypes.add(out.dtype)
        return out

    real_loss = gated._loss
    monkeypatch.setattr(gated, "_loss", spy_loss)
    net = _DtypeSpy()
    before = [p.detach().clone() for p in net.parameters()]
    train_gated(gated_set(2, 1), GatedTrainConfig(epochs=1, batch_size=3, pretrained=False, device="cpu", amp=amp),
                model=net)
    assert net.dtypes == {dtype}
    assert loss_dtypes == {torch.float32}  # the loss (its Dice sums over whole maps) is always float32
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the weights stay float32
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # and train


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_asked_without_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        train_gated(gated_set(2, 0), GatedTrainConfig(device="cuda", pretrained=False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_and_predict_on_cuda() -> None:
    data = gated_set(2, 1)
    model = train_gated(data, GatedTrainConfig(epochs=1, pretrained=False, device="cuda"))
    assert next(model.parameters()).device.type == "cpu"  # handed back on the CPU
    seg_cpu, gate_cpu = predict_set(model, data.images[:1])
    seg_gpu, gate_gpu = predict_set(model.to("cuda"), data.images[:1])
    assert np.abs(seg_cpu.astype(int) - seg_gpu.astype(int)).max() <= 2
    np.testing.assert_allclose(gate_cpu, gate_gpu, atol=1e-3)


def _perfect_oof(seed: int = 0) -> tuple[LabelledSet, OutOfFold]:
    """20 fully labelled images, every class on some, and out-of-fold maps and gate equal to the truth."""
    rng = np.random.default_rng(seed)
    n = 20
    presence = rng.random((n, 4)) < 0.5
    presence[:2], presence[2:4] = True, False  # every class has defect and clean pairs
    masks = []
    for i in range(n):
        m = np.zeros((4, 256, 1600), np.uint8)
        for c in np.flatnonzero(presence[i]):
            m[c, 40 * c : 40 * c + 30, 100:400] = 1
        masks.append(m)
    data = LabelledSet([f"{i}.jpg" for i in range(n)], np.zeros((n, 256, 1600), np.uint8), presence,
                       np.ones(n, bool), masks)
    seg = np.stack(masks) * np.uint8(255)
    return data, OutOfFold(stratified_folds(data, 2), seg, presence.astype(np.float32))


@pytest.mark.parametrize(("prevalence", "on"), [((0.01, 0.02, 0.01, 0.03), False), ((0.9, 0.8, 0.9, 0.7), True)])
def test_cross_validate_tunes_the_gate_for_the_given_prevalence(prevalence: tuple, on: bool) -> None:
    # Perfect predictions: a class pays when defects are common, but not when they are so rare that
    # the rule-of-three margin of false positives outweighs them (about 10 clean pairs per class).
    data, oof = _perfect_oof()
    cv = cross_validate(data, oof, prevalence=prevalence)
    est = cv.tuned_estimate
    assert est["prevalence"] == list(prevalence)
    assert est["all_empty"] == pytest.approx(np.mean([1 - p for p in prevalence]))
    for choice in cv.choices:
        assert all((g != CLASS_OFF) == on for g in choice.gate)
    # On: every pair scores 1. Off: the defect pairs score 0, so each class expects 1 - prevalence.
    want = [1.0] * 4 if on else [1 - p for p in prevalence]
    assert list(est["per_class"].values()) == pytest.approx(want)
    assert cv.summary()["score_mean"] == pytest.approx(1.0 if on else 1 - data.presence.mean(), abs=0.05)


def test_cross_validate_with_another_rule_tunes_on_the_other_folds_only() -> None:
    data, oof = _perfect_oof()
    seen = []

    def all_off(seg, gate, masks, presence, prevalence):
        seen.append((len(seg), len(gate), len(masks), len(presence), tuple(prevalence)))
        return GateChoice([CLASS_OFF] * 4, [0.5] * 4, [0] * 4, [0.0] * 4)

    cv = cross_validate(data, oof, prevalence=(0.9, 0.8, 0.9, 0.7), tune=all_off)
    sizes = [int((oof.fold != f).sum()) for f in range(2)]
    assert seen == [(n, n, n, n, (0.9, 0.8, 0.9, 0.7)) for n in sizes]
    # Every class off: each fold scores exactly its all-empty score, where the default rule scores 1.
    np.testing.assert_allclose(cv.folds["score"], cv.folds["all_empty"])
    assert cross_validate(data, oof, prevalence=(0.9, 0.8, 0.9, 0.7)).folds["score"].tolist() == [1.0, 1.0]


def test_expected_score_at_other_prevalences() -> None:
    data, oof = _perfect_oof()
    cv = cross_validate(data, oof, prevalence=(0.01, 0.02, 0.01, 0.03))  # every class off
    assert cv.expected_score((0.5, 0.25, 0.1, 0.2))["per_class"] == pytest.approx({"1": 0.5, "2": 0.75, "3": 0.9, "4": 0.8})
    assert cv.expected_score((0.01, 0.02, 0.01, 0.03)) == cv.tuned_estimate
    assert cv.expected_score(PREVALENCE) == cv.real_estimate
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        cv.expected_score((0.5, 0.25, 0.1, 2.0))
    bare = type(cv)(cv.folds, cv.report, cv.real_estimate)
    with pytest.raises(ValueError, match="keeps no per-pair Dice"):
        bare.expected_score(PREVALENCE)


@pytest.mark.parametrize("absent", [[1], [1, 3]])
def test_expected_score_not_estimable_without_a_class(absent: list[int]) -> None:
    from steelfast.training.fit import cv_text

    data, oof = _perfect_oof()
    for c in absent:  # a mill's data without any defect of these classes
        data.presence[:, c] = False
        for m in data.masks:
            m[c] = 0
        oof.seg[:, c], oof.gate[:, c] = 0, 0.0
    cv = cross_validate(data, oof)
    est = cv.real_estimate
    assert est["score"] is None and est["missing"] == [c + 1 for c in absent]
    assert sorted(est["per_class"]) == sorted(str(c + 1) for c in range(4) if c not in absent)
    json.dumps(cv.summary(), allow_nan=False)  # strict JSON: no NaN in cv.json
    classes = ", ".join(str(c + 1) for c in absent)
    assert f"not estimable (class {classes}: the scored images need some with that defect and some without)" in (
        cv_text(data, cv))
    assert cross_validate(*_perfect_oof()).real_estimate["missing"] == []


def test_cross_validate_default_prevalence_is_kaggle() -> None:
    data, oof = _perfect_oof(1)
    cv = cross_validate(data, oof)
    assert cv.real_estimate["prevalence"] == list(PREVALENCE) and cv.tuned_estimate == cv.real_estimate


@pytest.mark.parametrize(("prevalence", "exc", "match"), [
    ((0.1, 0.2, 0.3), ValueError, r"one share per class \(4\), got 3"),
    ((0.1, 0.0, 0.3, 0.1), ValueError, "strictly between 0 and 1"),
    ((0.1, float("nan"), 0.3, 0.1), ValueError, "strictly between 0 and 1"),
    ((0.1, 1.0, 0.3, 0.1), ValueError, "strictly between 0 and 1"),
    ("0.1;0.2;0.3;0.1", ValueError, "4 comma-separated numbers, got '0.1;0.2;0.3;0.1'"),
    ((0.1, True, 0.3, 0.1), TypeError, "prevalence must be real numbers"),
    ((0.1, "0.2", 0.3, 0.1), TypeError, "prevalence must be real numbers"),
    ((0.1, 0.2j, 0.3, 0.1), TypeError, "prevalence must be real numbers"),
    (0.1, TypeError, "prevalence must be a flat sequence of 4 numbers, got float: 0.1"),
    (np.float64(0.1), TypeError, "prevalence must be a flat sequence of 4 numbers, got float64"),
    ([[0.1, 0.2], [0.3, 0.4]], TypeError, "prevalence must be a flat sequence of 4 numbers, got list"),
    (np.full((2, 2), 0.1), TypeError, "prevalence must be a flat sequence of 4 numbers, got ndarray"),
    ([[0.1], 0.2, 0.3, 0.4], TypeError, "prevalence must be a flat sequence of 4 numbers, got list"),
])
def test_cross_validate_bad_prevalence(prevalence: object, exc: type, match: str) -> None:
    data, oof = _perfect_oof()
    with pytest.raises(exc, match=match):
        cross_validate(data, oof, prevalence=prevalence)


@pytest.mark.parametrize("given", ["0.9, 0.8,0.9,0.7", [0.9, 0.8, 0.9, 0.7], np.array([0.9, 0.8, 0.9, 0.7]),
                                   (Fraction(9, 10), 0.8, np.float32(0.9), Fraction(7, 10))])
def test_cross_validate_takes_prevalence_as_numbers_or_text(given: object) -> None:
    data, oof = _perfect_oof()
    cv = cross_validate(data, oof, prevalence=given)
    assert cv.tuned_estimate["prevalence"] == pytest.approx([0.9, 0.8, 0.9, 0.7])
    assert cv.real_estimate["prevalence"] == list(PREVALENCE)  # always the Kaggle rates
    assert cv.summary()["tuned_prevalence_estimate"] == cv.tuned_estimate


@pytest.mark.slow
def test_out_of_fold_cv_and_fit() -> None:
    data = gated_set(6, 2)
    cfg = GatedTrainConfig(epochs=1, batch_size=4, pretrained=False, frozen_blocks=0)
    oof = out_of_fold(data, cfg, stratified_folds(data, 2))
    assert oof.seg.shape == (8, 4, 256, 1600) and oof.seg.dtype == np.uint8 and oof.gate.shape == (8, 4)
    cv = cross_validate(data, oof)
    assert len(cv.folds) == 2 and cv.folds["images"].sum() == 6
    assert int(cv.report.loc["all", "pairs"]) == 24  # only the fully labelled images are scored
    # A fold scored with its class off scores exactly all-empty; no fold can beat 1.
    assert (cv.folds["score"] <= 1).all()
    model, choice = fit_gated(data, cfg, oof)
    assert isinstance(model, GatedUNet) and model.config["gate_thresholds"] == choice.gate
    seg, gate = predict_set(model, data.images[:2])
    assert seg.shape == (2, 4, 256, 1600) and ((gate >= 0) & (gate <= 1)).all()
