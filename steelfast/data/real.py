"""Real labelled images in memory: full masks where known, class presence where only that is known.

Flow: image folders + a mask label file (either Kaggle format) + an optional presence table →
:class:`LabelledSet` (grey images, per-class presence, masks or ``None``).

A *presence table* (weak labels) is a CSV (or DataFrame) with an ``ImageId`` column and one column
per class, named ``area_class_1`` …, ``class_1`` … or ``1`` …; a value > 0 means the class is present. Images listed
there but not in the mask file are *weak*: their class presence is known, their masks are not.
The layout of ``../shared/data/severstal`` (``image_classes.csv`` with ``has_rle_labels``) is
read by :func:`load_shared`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from steelfast._io import PathLike
from steelfast.images import list_images, read_gray
from steelfast.labels import LabelError, build_masks, read_labels
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["LabelledSet", "load_labelled", "load_shared", "read_presence", "shared_data_dir"]


@dataclass
class LabelledSet:
    """Labelled real images held in memory.

    Attributes:
        ids: ImageIds (file names), in a fixed order.
        images: uint8 (N, 256, 1600) grey images.
        presence: bool (N, 4): class c+1 present in image n.
        full: bool (N,): masks known (True) or presence only (False).
        masks: For full images, uint8 (4, 256, 1600) 0/1 masks; None for weak ones.
        source: Free-form description for checkpoint metadata.
        gate: bool (N,): the image's class presence trains the gate (False for synthetic images
            that train the segmentation maps only, see :class:`~steelfast.training.mix.SynthMix`);
            None (the default) means every image.
        areas: float32 (N, 4): the pixel area of each class of a weak image where its presence
            table gives one (``area_class_*`` columns), else NaN; NaN for every full image (its
            masks hold its areas). None (the default) means no areas known.
    """

    ids: list[str]
    images: np.ndarray
    presence: np.ndarray
    full: np.ndarray
    masks: list[np.ndarray | None]
    source: dict = field(default_factory=dict)
    gate: np.ndarray | None = None
    areas: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = np.ones(len(self.ids), bool)
        else:
            given = self.gate
            self.gate = np.asarray(given)
            shown = repr(given) if len(repr(given)) <= 60 else f"{self.gate.dtype} array of shape {self.gate.shape}"
            if self.gate.dtype != bool:
                raise TypeError(f"gate must be a bool array (one mark per image), got {shown}")
            if self.gate.shape != (len(self.ids),):
                raise ValueError(f"gate must have one mark per image, shape ({len(self.ids)},), got {shown}")
        if self.areas is None:
            self.areas = np.full((len(self.ids), len(CLASSES)), np.nan, np.float32)
        else:
            given = self.areas
            self.areas = np.asarray(given, dtype=np.float32)
            if self.areas.shape != (len(self.ids), len(CLASSES)):
                raise ValueError(f"areas must have shape ({len(self.ids)}, {len(CLASSES)}), got {self.areas.shape}")
            if (self.areas < 0).any():  # NaN compares False: unknown areas pass
                bad = np.argwhere(self.areas < 0)[0]
                raise ValueError(f"areas must be >= 0 or NaN, got {float(self.areas[tuple(bad)])!r} "
                                 f"for {self.ids[bad[0]]!r}, class {bad[1] + 1}")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> LabelledSet:
        """The images at ``index`` (a new set sharing the arrays' memory where possible)."""
        idx = np.asarray(index, dtype=np.int64)
        return LabelledSet(
            [self.ids[i] for i in idx], self.images[idx], self.presence[idx], self.full[idx],
            [self.masks[i] for i in idx], dict(self.source), self.gate[idx], self.areas[idx],
        )

    def digest(self, *, areas: bool = True) -> str:
        """Hex SHA-256 of the ids, images, labels, masks, gate marks and areas, in order: two sets with
        the same digest train a model identically (a saved model's metadata can record what it trained
        on). The marks count only where some image does not train the gate, and the areas only where
        one is known and ``areas`` is True (a training without the area loss passes False: they do
        not train it), so a set without them keeps the digest it had before they existed."""
        import hashlib

        h = hashlib.sha256()
        h.update("\n".join(self.ids).encode("utf-8"))
        for array in (self.images, self.presence, self.full):
            a = np.ascontiguousarray(array)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
        for m in self.masks:
            h.update(b"-" if m is None else np.ascontiguousarray(m, dtype=np.uint8).data)
        if not self.gate.all():  # a set whose every image trains the gate keeps its digest of before
            h.update(b"gate" + np.ascontiguousarray(self.gate).data)
        if areas and np.isfinite(self.areas).any():
            h.update(b"areas" + np.ascontiguousarray(self.areas).data)
        return h.hexdigest()

    @classmethod
    def concat(cls, sets: Sequence[LabelledSet]) -> LabelledSet:
        """One set of all images of ``sets``, in order (ImageIds must stay unique)."""
        if not sets:
            raise ValueError("concat needs at least one LabelledSet")
        ids = [i for s in sets for i in s.ids]
        if len(set(ids)) != len(ids):
            raise ValueError("concat: an ImageId appears in more than one set")
        return cls(ids, np.concatenate([s.images for s in sets]), np.concatenate([s.presence for s in sets]),
                   np.concatenate([s.full for s in sets]), [m for s in sets for m in s.masks],
                   {"parts": [s.source for s in sets]}, np.concatenate([s.gate for s in sets]),
                   np.concatenate([s.areas for s in sets]))

    def summary(self) -> dict:
        """Counts for metadata and logs: images, full, weak, and images per class."""
        return {
            "images": len(self),
            "full": int(self.full.sum()),
            "weak": int((~self.full).sum()),
            "defect_free": int((~self.presence.any(axis=1)).sum()),
            "images_per_class": {str(c): int(self.presence[:, c - 1].sum()) for c in CLASSES},
            **({} if self.gate.all() else {"maps_only": int((~self.gate).sum())}),
        }


def read_presence(source: PathLike | pd.DataFrame) -> pd.DataFrame:
    """Read a presence table (a CSV file or a DataFrame) into ``ImageId`` + bool columns ``1``..``4``.

    The class columns are named ``area_class_1`` …, ``class_1`` … or ``1`` … (the last as this
    function returns them, so its output reads again); a value > 0 means the class is present.
    Where all four are ``area_class_*`` columns, their pixel areas are kept as float columns
    ``area_class_1`` … beside the bool ones (and read again first).

    Raises:
        FileNotFoundError: The file does not exist.
        TypeError: ``source`` is neither a path nor a DataFrame.
        LabelError: No ImageId column, no class columns, or a non-numeric value (file and line, or
            the DataFrame's row, and the value).
    """
    if isinstance(source, pd.DataFrame):
        name = "presence table (DataFrame)"
        columns = [str(c) for c in source.columns]
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise LabelError(f"{name}: column {twice[0]!r} appears twice (columns {list(source.columns)})")
        frame = source.set_axis(columns, axis=1)
        labels = [f"index {i!r}" for i in frame.index]  # the caller's own row labels
        if "ImageId" in frame.columns and frame["ImageId"].isna().any():
            row = int(np.flatnonzero(frame["ImageId"].isna().to_numpy())[0])
            raise LabelError(f"{name}, {labels[row]}: missing ImageId, got {frame['ImageId'].iloc[row]!r}")
        frame = frame.astype(str)
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"presence table not found: {p}")
        name = str(p)
        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
        labels = [f"line {i + 2}" for i in range(len(frame))]  # line 1 is the header
    else:
        raise TypeError(f"presence must be a CSV path or a DataFrame, got {type(source).__name__}")
    if "ImageId" not in frame.columns:
        raise LabelError(f"{name}: a presence table needs an ImageId column, got {list(frame.columns)}")
    out = pd.DataFrame({"ImageId": frame["ImageId"].astype(str).to_numpy()})
    areas: dict[str, np.ndarray] = {}
    for c in CLASSES:
        col = next((n for n in (f"area_class_{c}", f"class_{c}", str(c)) if n in frame.columns), None)
        if col is None:
            raise LabelError(f"{name}: no column area_class_{c}, class_{c} or {c} (got {list(frame.columns)})")
        text = frame[col].replace({"True": "1", "False": "0"})  # a column of bools
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise LabelError(f"{name}, {labels[row]}: {col} must be a number >= 0, got {frame[col].iloc[row]!r}")
        out[c] = values.to_numpy() > 0
        areas[col] = values.to_numpy(np.float32)
    if (out["ImageId"] == "").any():
        row = int(np.flatnonzero((out["ImageId"] == "").to_numpy())[0])
        raise LabelError(f"{name}, {labels[row]}: empty ImageId")
    if all(col.startswith("area_") for col in areas):
        out = out.assign(**areas)
    return out


def _index_images(folders: Sequence[PathLike]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        for path in list_images(folder):
            found.setdefault(path.name, path)
        for path in list_images(folder):
            # A lossless copy "X.png" stands in for the Kaggle "X.jpg" when that is absent.
            found.setdefault(path.stem + ".jpg", path)
    return found


def load_labelled(
    image_dirs: PathLike | Sequence[PathLike],
    labels: PathLike | pd.DataFrame | None,
    *,
    full_ids: Sequence[str] | None = None,
    presence: PathLike | pd.DataFrame | None = None,
    progress: bool = False,
) -> LabelledSet:
    """Read labelled images into memory.

    Args:
        image_dirs: One folder or several; the first file of a name wins, and ``X.png`` serves
            as ``X.jpg`` when no such JPEG exists.
        labels: Mask labels (either Kaggle format), or None when every image is weak.
        full_ids: Images whose masks are completely known (an image without rows is then
            defect-free). Default: every image of the folders that the presence table does not
            list, plus every image that has a row in ``labels``.
        presence: Presence table (see the module docstring) for weak images.
        progress: Show a progress bar while reading.

    Returns:
        A :class:`LabelledSet` sorted by ImageId.

    Raises:
        FileNotFoundError: A folder, label file or listed image is missing.
        LabelError: A malformed label file.
        ValueError: No labelled images were found.
    """
    from tqdm.auto import tqdm

    dirs = [image_dirs] if isinstance(image_dirs, (str, os.PathLike)) else list(image_dirs)
    files = _index_images(dirs)
    table = read_labels(labels, images=list(files)) if labels is not None else None
    weak = read_presence(presence) if presence is not None else None
    with_rows = set(table.loc[table["hasMask"], "ImageId"]) if table is not None else set()
    if full_ids is None:
        listed = set(weak["ImageId"]) if weak is not None else set()
        # One id per file: the name a label uses, else the file's own name (not its alias).
        by_path: dict[Path, list[str]] = {}
        for key, path in files.items():
            by_path.setdefault(path, []).append(key)
        own = {next((k for k in keys if k in listed | with_rows), path.name) for path, keys in by_path.items()}
        full = {i for i in own if i not in listed} | with_rows if table is not None else set()
    else:
        full = set(full_ids)
    weak_ids = set(weak["ImageId"]) - full if weak is not None else set()
    ids = sorted((full | weak_ids) & set(files))
    missing = sorted((full | weak_ids) - set(files))
    if missing and full_ids is not None:
        raise FileNotFoundError(f"{len(missing)} labelled images are not in {dirs}: {missing[:5]}")
    if not ids:
        raise ValueError(f"no labelled images found in {dirs}")
    # A table may list an image twice (two copies of it); a class counts when any row has it.
    weak_rows = weak.groupby("ImageId")[list(CLASSES)].any() if weak is not None else None
    area_cols = [f"area_class_{c}" for c in CLASSES]
    weak_areas = weak.groupby("ImageId")[area_cols].max() if weak is not None and area_cols[0] in weak else None
    areas = np.full((len(ids), len(CLASSES)), np.nan, np.float32)
    images = np.empty((len(ids), *SHAPE), np.uint8)
    pres = np.zeros((len(ids), 4), bool)
    is_full = np.zeros(len(ids), bool)
    masks: list[np.ndarray | None] = []
    for n, image_id in enumerate(tqdm(ids, desc="reading", disable=not progress, unit="img")):
        gray = read_gray(files[image_id])
        if gray.shape != SHAPE:
            raise ValueError(f"{files[image_id]}: expected a {SHAPE[0]}×{SHAPE[1]} image, got {gray.shape[0]}×{gray.shape[1]}")
        images[n] = gray
        if image_id in full:
            m = build_masks(table, image_id) if table is not None else np.zeros((len(CLASSES), *SHAPE), np.uint8)
            masks.append(m)
            pres[n] = m.reshape(4, -1).any(axis=1)
            is_full[n] = True
        else:
            masks.append(None)
            pres[n] = weak_rows.loc[image_id, list(CLASSES)].to_numpy(bool)  # type: ignore[union-attr]
            if weak_areas is not None:
                areas[n] = weak_areas.loc[image_id].to_numpy(np.float32)
    source = {"image_dirs": [str(d) for d in dirs], "labels": None if labels is None else str(labels)}
    return LabelledSet(ids, images, pres, is_full, masks, source, areas=areas)


def shared_data_dir() -> Path:
    """The real Severstal material: ``$STEELFAST_SHARED_DATA`` or ``../shared/data/severstal``
    next to the current folder or a parent of it (may not exist)."""
    env = os.environ.get("STEELFAST_SHARED_DATA")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for parent in [here, *here.parents]:
        cand = parent / "shared" / "data" / "severstal"
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "data" / "severstal"


def load_shared(root: PathLike | None = None, *, progress: bool = False) -> LabelledSet:
    """Load the shared real material: 53 fully labelled and 66 weakly labelled train images.

    Uses ``image_classes.csv`` (``has_rle_labels`` = 1: masks fully known), ``train_partial.csv``
    and ``train_extra_from_label_pngs.csv``, and the images in ``images/`` and ``images_png/``.
    """
    base = Path(root) if root is not None else shared_data_dir()
    if not base.is_dir():
        raise FileNotFoundError(f"shared real data not found at {base} (set STEELFAST_SHARED_DATA)")
    classes = pd.read_csv(base / "image_classes.csv", dtype={"ImageId": str})
    rle = pd.concat(
        [pd.read_csv(base / n, dtype=str, keep_default_na=False)
         for n in ("train_partial.csv", "train_extra_from_label_pngs.csv")],
        ignore_index=True,
    )
    full_ids = classes.loc[classes["has_rle_labels"] == 1, "ImageId"].tolist()
    weak = read_presence(base / "image_classes.csv")
    weak = weak[weak["ImageId"].isin(set(classes.loc[classes["has_rle_labels"] == 0, "ImageId"]))]
    rle = rle[rle["ImageId"].isin(set(full_ids))]
    data = load_labelled([base / "images", base / "images_png"], rle, full_ids=full_ids, presence=weak,
                         progress=progress)
    data.source = {"shared": str(base), **data.summary()}
    return data
