"""Tests for steelfast.data.dataset: the torch Dataset, stratified split, defect filter and loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from steelfast.data.dataset import (
    EpochSampler,
    SteelDataset,
    balanced_weights,
    class_presence,
    make_loader,
    train_val_split,
    with_defects,
)
from steelfast.data.synth import make_dataset
from steelfast.images import read_gray
from steelfast.labels import read_labels
from steelfast.severstal import DEFAULT_MEAN, DEFAULT_STD


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, list[str]]:
    root = make_dataset(tmp_path_factory.mktemp("ds") / "d", 16, 0, seed=11, progress=False)
    ids = sorted(p.name for p in (root / "train_images").iterdir())
    return root / "train_images", read_labels(root / "train.csv", images=ids), ids


def _defective(labels: pd.DataFrame, ids: list[str]) -> list[str]:
    out = with_defects(labels, ids)
    assert out, "the fixture must contain defective images"
    return out


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("crop", [None, 256, 512])
def test_shapes_dtypes_and_normalization(data, channels: int, crop) -> None:
    folder, labels, ids = data
    ds = SteelDataset(folder, labels, ids[:3], channels=channels, crop_width=crop)
    assert len(ds) == 3
    img, mask = ds[0]
    w = crop or 1600
    assert img.dtype == torch.float32 and img.shape == (channels, 256, w)
    assert mask.dtype == torch.float32 and mask.shape == (4, 256, w)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    if crop is None:
        gray = read_gray(folder / ids[0]).astype(np.float64)
        ref = (gray / 255.0 - DEFAULT_MEAN) / DEFAULT_STD
        for c in range(channels):
            np.testing.assert_allclose(img[c].numpy(), ref, atol=1e-5)


def test_masks_match_labels(data) -> None:
    from steelfast.labels import build_masks

    folder, labels, ids = data
    ds = SteelDataset(folder, labels, ids)
    for i in range(len(ids)):
        np.testing.assert_array_equal(
            ds[i][1].numpy().astype(np.uint8), build_masks(labels, ids[i])
        )


def test_crops_prefer_defects(data) -> None:
    folder, labels, ids = data
    bad = _defective(labels, ids)
    ds = SteelDataset(folder, labels, bad, crop_width=224, prefer_defects=1.0, seed=3)
    for epoch in range(3):
        for i in range(len(ds)):
            img, mask = ds[(i, epoch)]
            assert img.shape[-1] == 224 and img.shape[-1] % 32 == 0
            assert mask.sum() > 0, (bad[i], epoch)


def test_uniform_crops_vary_with_epoch(data) -> None:
    folder, labels, ids = data
    ds = SteelDataset(folder, labels, ids[:4], crop_width=128, prefer_defects=0.0, seed=1)
    assert any(not torch.equal(ds[(i, 0)][0], ds[(i, 1)][0]) for i in range(4))


def test_flips_apply_to_image_and_mask_alike(data) -> None:
    folder, labels, ids = data
    bad = _defective(labels, ids)
    plain = SteelDataset(folder, labels, bad, channels=1)
    flipped = SteelDataset(folder, labels, bad, channels=1, flips=True, seed=4)
    seen = set()
    for epoch in range(2):
        for i in range(len(bad)):
            img0, m0 = plain[i]
            img1, m1 = flipped[(i, epoch)]
            matches = [
                (h, v)
                for h in (False, True)
                for v in (False, True)
                if torch.equal(_flip(img0, h, v), img1) and torch.equal(_flip(m0, h, v), m1)
            ]
            assert matches, (bad[i], epoch)
            seen.add(matches[0])
    assert len(seen) > 1  # flips really happen


def _flip(t: torch.Tensor, h: bool, v: bool) -> torch.Tensor:
    dims = [d for d, f in ((-1, h), (-2, v)) if f]
    return torch.flip(t, dims) if dims else t


def test_deterministic_with_seed(data) -> None:
    folder, labels, ids = data
    kw = {"crop_width": 256, "flips": True}
    a = SteelDataset(folder, labels, ids, seed=5, **kw)
    b = SteelDataset(folder, labels, ids, seed=5, **kw)
    c = SteelDataset(folder, labels, ids, seed=6, **kw)
    for i in (0, 3, 7):
        assert torch.equal(a[(i, 2)][0], b[(i, 2)][0]) and torch.equal(a[(i, 2)][1], b[(i, 2)][1])
    assert any(not torch.equal(a[i][0], c[i][0]) for i in range(len(ids)))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"crop_width": 100}, ValueError, "positive multiple of 32 or None, got 100"),
        ({"crop_width": 0}, ValueError, "got 0"),
        ({"channels": 0}, ValueError, "channels must be a positive int, got 0"),
        ({"prefer_defects": 1.5}, ValueError, r"probability in \[0, 1\], got 1.5"),
        ({"std": 0.0}, ValueError, "std must be > 0"),
    ],
)
def test_dataset_bad_args(data, kwargs, exc, match) -> None:
    folder, labels, ids = data
    with pytest.raises(exc, match=match):
        SteelDataset(folder, labels, ids, **kwargs)


def test_dataset_bad_inputs(data, tmp_path: Path) -> None:
    folder, labels, ids = data
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images are not in .*'zzz\.jpg'"):
        SteelDataset(folder, labels, [ids[0], "zzz.jpg"])
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        SteelDataset(tmp_path / "none", labels, ids)
    with pytest.raises(ValueError, match=r"lack columns \['ClassId'\]"):
        SteelDataset(folder, labels.drop(columns="ClassId"), ids)
    bad = pd.DataFrame({"ImageId": [ids[0]], "ClassId": [7], "EncodedPixels": ["1 3"]})
    with pytest.raises(ValueError, match=r"ClassId must be 1..4, got 7"):
        SteelDataset(folder, bad, ids)
    with pytest.raises(ValueError, match="duplicate"):
        SteelDataset(folder, labels, [ids[0], ids[0]])
    with pytest.raises(IndexError, match="out of range"):
        SteelDataset(folder, labels, ids[:2])[5]


def test_crop_wider_than_image(tmp_path: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((64, 96), np.uint8))
    labels = pd.DataFrame({"ImageId": [], "ClassId": [], "EncodedPixels": []})
    ds = SteelDataset(tmp_path, labels, ["small.png"], crop_width=128)
    with pytest.raises(ValueError, match="crop_width 128 is wider than .*small.png"):
        ds[0]


def _synthetic_labels(n: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"{i:09x}.jpg" for i in range(n)]
    combos = [(), (3,), (1,), (4,), (3, 4), (2,)]
    p = np.array([0.45, 0.35, 0.08, 0.06, 0.04, 0.02])
    rows = []
    for iid in ids:
        for c in combos[rng.choice(len(combos), p=p)]:
            rows.append((iid, c, "1 10"))
    return pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]), ids


@pytest.mark.parametrize("frac", [0.1, 0.2, 0.5])
def test_split_is_stratified(frac: float) -> None:
    labels, ids = _synthetic_labels(1000)
    train, val = train_val_split(labels, ids, val_fraction=frac, seed=1)
    assert not set(train) & set(val) and sorted(train + val) == sorted(ids)
    assert train == sorted(train) and val == sorted(val)
    assert abs(len(val) - frac * len(ids)) <= 1
    key = lambda sub: pd.Series(map(tuple, class_presence(labels, sub).astype(int))).value_counts()
    full, v = key(ids), key(val)
    for k, n in full.items():
        assert abs(v.get(k, 0) - frac * n) <= 1, (k, v.get(k, 0), n)


def test_split_deterministic() -> None:
    labels, ids = _synthetic_labels(200)
    assert train_val_split(labels, ids, seed=3) == train_val_split(labels, ids[::-1], seed=3)
    assert train_val_split(labels, ids, seed=3) != train_val_split(labels, ids, seed=4)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.2, "0.2"])
def test_split_bad_fraction(frac) -> None:
    labels, ids = _synthetic_labels(10)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        train_val_split(labels, ids, val_fraction=frac)


def test_split_empty_and_string_ids() -> None:
    labels, _ = _synthetic_labels(5)
    assert train_val_split(labels, []) == ([], [])
    with pytest.raises(TypeError, match="got the string"):
        train_val_split(labels, "abc.jpg")


def test_with_defects_and_presence() -> None:
    labels = pd.DataFrame(
        {
            "ImageId": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
            "ClassId": [1, 3, 4, 2],
            "EncodedPixels": ["1 2", "5 1", "", "9 9"],
        }
    )
    ids = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    np.testing.assert_array_equal(
        class_presence(labels, ids),
        [[True, False, True, False], [False] * 4, [False, True, False, False], [False] * 4],
    )
    assert with_defects(labels, ids) == ["a.jpg", "c.jpg"]


def test_loader_batches_reshuffle_and_determinism(data) -> None:
    folder, labels, ids = data
    ds = SteelDataset(folder, labels, ids, crop_width=128, channels=1)
    loader = make_loader(ds, batch_size=5, shuffle=True, seed=2)
    assert len(loader) == 4
    order = lambda ld: [s for s in iter(ld.sampler)]
    e0, e1 = order(loader), order(loader)
    assert (
        sorted(i for i, _ in e0) == list(range(16))
        and [e for _, e in e0] == [0] * 16
        and e1[0][1] == 1
    )
    assert [i for i, _ in e0] != [i for i, _ in e1]
    assert order(make_loader(ds, seed=2)) == e0
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 1]
    assert batches[0][0].shape == (5, 1, 256, 128) and batches[0][1].shape == (5, 4, 256, 128)
    assert len(make_loader(ds, batch_size=5, drop_last=True)) == 3
    assert len(make_loader(ds)) == 1  # batch size 32 by default


def test_loader_with_two_workers_matches_main_process(data) -> None:
    folder, labels, ids = data
    ds = SteelDataset(folder, labels, ids[:8], crop_width=96, flips=True, channels=3, seed=9)
    seq = [
        tuple(t.clone() for t in b) for b in make_loader(ds, batch_size=4, seed=1, num_workers=0)
    ]
    par = list(make_loader(ds, batch_size=4, seed=1, num_workers=2))
    assert len(par) == 2
    for (a_img, a_m), (b_img, b_m) in zip(seq, par):
        assert torch.equal(a_img, b_img) and torch.equal(a_m, b_m)


def test_loader_plain_dataset_and_bad_args() -> None:
    tds = torch.utils.data.TensorDataset(torch.arange(10))
    got = torch.cat([b[0] for b in make_loader(tds, batch_size=3, seed=0)])
    assert sorted(got.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        make_loader(tds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0, got -1"):
        make_loader(tds, num_workers=-1)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_balanced_weights_even_out_categories(power: float) -> None:
    labels, ids = _synthetic_labels(1000)
    presence = class_presence(labels, ids)
    w = balanced_weights(presence, power)
    assert w.shape == (1000,) and w.sum() == pytest.approx(1.0) and (w > 0).all()
    none = ~presence.any(axis=1)
    only2 = presence[:, 1] & (presence.sum(axis=1) == 1)
    share_none, share_2 = w[none].sum(), w[only2].sum()
    if power == 0:
        np.testing.assert_allclose(w, 1 / 1000)
    elif power == 1:  # each single-category set gets the same mass: n_c * (n_c / N)**-1 = N
        assert share_2 == pytest.approx(share_none)
    else:
        assert only2.mean() < share_2 < share_none < none.mean()


@pytest.mark.parametrize(
    ("presence", "power", "match"),
    [
        (np.zeros((3, 3), bool), 0.5, r"presence must be bool \(N, 4\) with N >= 1, got shape \(3, 3\)"),
        (np.zeros((0, 4), bool), 0.5, r"got shape \(0, 4\)"),
        (np.zeros((3, 4), bool), -1, "power must be a number >= 0, got -1"),
        (np.zeros((3, 4), bool), "1", "power must be a number >= 0, got '1'"),
    ],
)
def test_balanced_weights_bad_input(presence, power, match) -> None:
    with pytest.raises(ValueError, match=match):
        balanced_weights(presence, power)


def test_weighted_sampler_draws_in_proportion_and_deterministically() -> None:
    weights = np.array([1.0, 0.0, 3.0, 0.0])
    sampler = EpochSampler(4, seed=5, weights=weights)
    epochs = [list(sampler) for _ in range(500)]
    assert all(len(e) == 4 and e[0][1] == k for k, e in enumerate(epochs))
    drawn = np.array([i for e in epochs for i, _ in e])
    assert set(drawn.tolist()) == {0, 2}
    assert abs((drawn == 2).mean() - 0.75) < 0.03
    assert list(EpochSampler(4, seed=5, weights=weights)) == epochs[0]
    with pytest.raises(ValueError, match=r"weights must be 4 finite non-negative numbers .* got shape \(3,\)"):
        EpochSampler(4, weights=np.ones(3))
    with pytest.raises(ValueError, match="weights must be 4 finite non-negative"):
        EpochSampler(4, weights=np.array([1.0, -1.0, 1.0, 1.0]))


def test_crops_pick_a_class_before_a_column(tmp_path: Path) -> None:
    # A wide class-3 defect and a narrow class-1 one: picking a defect column uniformly would land on class 1 in
    # about 1 % of the crops, picking the class first in about half.
    import cv2

    from steelfast.rle import encode

    cv2.imwrite(str(tmp_path / "a.png"), np.full((256, 1600), 128, np.uint8))
    wide, narrow = np.zeros((256, 1600), np.uint8), np.zeros((256, 1600), np.uint8)
    wide[:, :1200] = 1
    narrow[100:110, 1500:1510] = 1
    labels = pd.DataFrame({"ImageId": ["a.png", "a.png"], "ClassId": [3, 1], "EncodedPixels": [encode(wide), encode(narrow)]})
    ds = SteelDataset(tmp_path, labels, ["a.png"], crop_width=128, prefer_defects=1.0, seed=1)
    hits = [ds[(0, epoch)][1][0].sum().item() > 0 for epoch in range(200)]
    assert 0.35 < np.mean(hits) < 0.65
