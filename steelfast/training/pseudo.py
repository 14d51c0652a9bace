"""Pseudo-labels: unlabelled images join training through a teacher model's image-level gate.

Flow: a model's training set → a *teacher* trained on that set alone
(:func:`~steelfast.training.gated.train_gated`) → the teacher's gate probabilities on unlabelled
images (:func:`~steelfast.training.gated.predict_set`) → :func:`pseudo_label` keeps the images whose
every class is confidently absent (gate ≤ ``negative``) or present (gate ≥ ``positive``):

* every class absent: a defect-free image;
* at least one class present: those classes present, the others absent;
* any class in between: the image is left out.

Every kept image is a weak label (class presence, no mask), as the weakly labelled Kaggle images
are: :func:`~steelfast.training.gated.train_gated` trains the gate on it and the segmentation of
its absent classes against empty masks, so a defect-free pseudo-label teaches empty masks for all
four classes (false masks on clean images are what cost the most), and the real masks keep their
weight (``full_repeat`` repeats real full labels only).

The teacher's masks are never used as labels: on real steel they are far less reliable than its
image-level gate. :class:`PseudoLabels` is the per-model hook that
:func:`~steelfast.training.crossval.out_of_fold` and :func:`~steelfast.training.crossval.fit_gated`
call: in a cross-validation each fold's teacher trains on that fold's training images only, so a
scored image never shapes its own fold's pseudo-labels. It more than doubles the training time
(a teacher per model, then the model on the kept images too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steelfast._io import PathLike
from steelfast._validate import check_fraction
from steelfast.data.real import LabelledSet
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["NEGATIVE", "POSITIVE", "PseudoLabels", "check_rule", "load_teacher", "load_unlabelled", "pseudo_label"]

#: Default rule: a class is absent at a gate probability of at most NEGATIVE, present at POSITIVE or more.
NEGATIVE = 0.05
POSITIVE = 0.95


def check_rule(negative: Any = None, positive: Any = None) -> tuple[float, float]:
    """Return ``(negative, positive)`` as floats if 0 ≤ negative < positive ≤ 1, else raise;
    None stands for the default (:data:`NEGATIVE`, :data:`POSITIVE`).

    Raises:
        TypeError: A value is not a number, quoting it.
        ValueError: A value is outside [0, 1], or ``negative`` is not below ``positive``; the
            message quotes both.
    """
    neg = NEGATIVE if negative is None else check_fraction("pseudo-label negative", negative)
    pos = POSITIVE if positive is None else check_fraction("pseudo-label positive", positive)
    if not neg < pos:
        raise ValueError(f"pseudo-label negative must be below positive, got negative={negative!r}, "
                         f"positive={positive!r}")
    return neg, pos


def pseudo_label(
    model: Any, images: np.ndarray, ids: Sequence[str], *, negative: float = NEGATIVE, positive: float = POSITIVE,
    batch_size: int = 4, source: dict | None = None,
) -> LabelledSet:
    """Label unlabelled images with a teacher's gate, keeping only the confident ones.

    Args:
        model: The teacher, a network with ``forward_both`` (a
            :class:`~steelfast.efficientnet.GatedUNet`); its ungated gate probabilities are used.
        images: uint8 (N, H, W) grey images.
        ids: Their ImageIds (file names), N of them.
        negative: A class is absent when its gate probability is at most this.
        positive: A class is present when its gate probability is at least this.
        batch_size: Images per forward pass.
        source: Extra description for the set's ``source`` (checkpoint metadata).

    Returns:
        The kept images as a weakly labelled :class:`~steelfast.data.real.LabelledSet` (presence
        only); its ``source`` records the rule and the counts.

    Raises:
        TypeError: ``images`` is not a uint8 array, or a rule value is not a number.
        ValueError: ``images`` is not (N, H, W), ``ids`` has another length, or a bad rule.
    """
    from steelfast.training.gated import predict_set

    neg, pos = check_rule(negative, positive)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise TypeError(f"images must be a uint8 NumPy array, got {type(images).__name__} "
                        f"of {getattr(images, 'dtype', None)}")
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) grey images, got shape {images.shape}")
    ids = [str(i) for i in ids]
    if len(ids) != len(images):
        raise ValueError(f"ids must name every image: {len(ids)} ids for {len(images)} images")
    classes = len(CLASSES)
    # Batch by batch, keeping the gate only: the full-size maps of a large folder would not fit in memory.
    gates = [predict_set(model, images[s : s + batch_size], batch_size)[1] for s in range(0, len(images), batch_size)]
    gate = np.concatenate(gates) if gates else np.zeros((0, classes), np.float32)
    if gate.shape != (len(images), classes):
        raise ValueError(f"the teacher's gate gave shape {gate.shape}, expected {(len(images), classes)}")
    absent, present = gate <= neg, gate >= pos
    keep = np.flatnonzero((absent | present).all(axis=1))
    clean = absent[keep].all(axis=1)
    counts = {
        "unlabelled": len(images), "kept": len(keep), "defect_free": int(clean.sum()),
        "weak": int((~clean).sum()), "images_per_class": {str(c): int(present[keep, c - 1].sum()) for c in CLASSES},
    }
    info = {"pseudo_labels": {"negative": neg, "positive": pos, **counts, **(source or {})}}
    return LabelledSet([ids[i] for i in keep], images[keep], present[keep], np.zeros(len(keep), bool),
                       [None] * len(keep), info)


def load_unlabelled(folder: PathLike) -> tuple[np.ndarray, list[str]]:
    """Read every image of a folder as grey, for :class:`PseudoLabels`.

    Returns:
        uint8 (N, 256, 1600) images and their file names, in file-name order.

    Raises:
        FileNotFoundError: The folder does not exist.
        NotADirectoryError: It is not a folder.
        ValueError: The folder holds no images, or an image cannot be read or is not 256×1600
            (the message names the file).
    """
    from steelfast.images import list_images, read_gray

    files = list_images(folder)
    if not files:
        raise ValueError(f"no images found in {str(folder)!r}")
    images = np.empty((len(files), *SHAPE), np.uint8)
    for k, f in enumerate(files):
        gray = read_gray(f)
        if gray.shape != SHAPE:
            raise ValueError(f"{f}: size {gray.shape[0]}x{gray.shape[1]}, expected {SHAPE[0]}x{SHAPE[1]}")
        images[k] = gray
    return images, [f.name for f in files]


@dataclass
class PseudoLabels:
    """Unlabelled images that join each model's training set through that set's own teacher.

    Attributes:
        images: uint8 (N, 256, 1600) unlabelled images.
        ids: Their ImageIds; none may also name a labelled image.
        negative, positive: The confidence rule of :func:`pseudo_label`.
        folder: Where the images came from (recorded in the metadata).
    """

    images: np.ndarray
    ids: list[str]
    negative: float = NEGATIVE
    positive: float = POSITIVE
    folder: str = ""

    def __post_init__(self) -> None:
        self.negative, self.positive = check_rule(self.negative, self.positive)
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise TypeError(f"images must be a uint8 (N, H, W) NumPy array, got {type(self.images).__name__} "
                            f"of {getattr(self.images, 'dtype', None)} {getattr(self.images, 'shape', '')}")
        if len(self.ids) != len(self.images):
            raise ValueError(f"ids must name every image: {len(self.ids)} ids for {len(self.images)} images")

    @classmethod
    def from_folder(cls, folder: PathLike, *, negative: float = NEGATIVE, positive: float = POSITIVE) -> PseudoLabels:
        """The images of ``folder`` (rule checked before anything is read)."""
        check_rule(negative, positive)
        images, ids = load_unlabelled(folder)
        return cls(images, ids, negative, positive, str(Path(folder)))

    def check_disjoint(self, labelled: Sequence[str]) -> None:
        """Raise ValueError, naming up to five, if an unlabelled ImageId is also in ``labelled``."""
        overlap = sorted(set(self.ids) & set(labelled))
        if overlap:
            raise ValueError(f"unlabelled images are also labelled training images: {overlap[:5]}")

    def describe(self) -> dict[str, Any]:
        """The settings, for metadata."""
        return {"folder": self.folder, "images": len(self.ids), "negative": self.negative, "positive": self.positive,
                "teacher": "a model trained on the same training images, one per trained model"}

    def __call__(self, train: LabelledSet, config: Any, progress: Callable[[str], None] | None = None,
                 teacher: Any = None) -> LabelledSet:
        """``train`` plus the images its own teacher labels confidently.

        Args:
            train: The training set of one model (a fold's, or all images for the final model).
            config: The :class:`~steelfast.training.gated.GatedTrainConfig` of the teacher.
            progress: Called with the teacher's epoch lines (prefixed ``teacher:``) and one summary line.
            teacher: A gated model trained on ``train`` with ``config``, taken as it is (:func:`load_teacher`
                loads a saved one and checks that); None trains one.

        Raises:
            ValueError: An unlabelled ImageId is also in ``train``.
        """
        from steelfast._device import resolve_device
        from steelfast.training.gated import train_gated

        self.check_disjoint(train.ids)
        if self.images.shape[1:] != train.images.shape[1:]:
            raise ValueError(f"unlabelled images are {self.images.shape[1:]}, the training images "
                             f"{train.images.shape[1:]}")
        if teacher is None:
            say = (lambda line: progress(f"teacher: {line}")) if progress else None
            teacher = train_gated(train, config, progress=say)
        teacher = teacher.to(resolve_device(config.device))
        pseudo = pseudo_label(teacher, self.images, self.ids, negative=self.negative, positive=self.positive,
                              source={"folder": self.folder})
        if progress:
            c = pseudo.source["pseudo_labels"]
            progress(f"pseudo-labels: {c['kept']} of {c['unlabelled']} images kept "
                     f"({c['defect_free']} defect-free, {c['weak']} weak)")
        return LabelledSet.concat([train, pseudo])


#: Config fields that may differ between a saved teacher and the run that reuses it (where it ran).
_RUN_ONLY = ("threads", "device")


def load_teacher(path: PathLike, train: LabelledSet, config: Any) -> Any:
    """A saved ungated model, checked to be a teacher of ``train``: trained on the same ImageIds, same settings.

    The checkpoint's metadata must record ``training.ids`` (the ImageIds it trained on, in order) and
    ``training.config`` (its :class:`~steelfast.training.gated.GatedTrainConfig` as a dict), and
    may record ``training.digest`` (:meth:`~steelfast.data.real.LabelledSet.digest`), as
    ``bench/real_cv.py`` writes them for its fold and final models; where the digest is recorded,
    the images, labels and masks must match too (synthetic images, for one, have the same ids
    whatever they hold). Reusing such a model instead of training a new teacher saves one training
    per model, and makes the comparison with and without pseudo-labels a paired one (the teacher
    is the model without).

    Args:
        path: The teacher's ``.safetensors`` (its JSON beside it).
        train: The training set the pseudo-labels are for.
        config: The run's config; only ``threads`` and ``device`` may differ from the teacher's.

    Raises:
        FileNotFoundError: No such checkpoint.
        ValueError: The metadata lacks the ids or config, or they, or the recorded digest, differ (the
            first difference is named).
    """
    from dataclasses import asdict

    from steelfast.checkpoint import load_checkpoint
    from steelfast.training.gated import LEGACY_CONFIG

    model, meta = load_checkpoint(path)
    training = meta.get("training", {})
    ids, saved = training.get("ids"), training.get("config")
    if ids is None or saved is None:
        raise ValueError(f"{path}: its metadata has no training.ids or training.config, so it cannot be "
                         "checked as a teacher of this training set")
    if list(ids) != list(train.ids):
        at = next((i for i, (a, b) in enumerate(zip(ids, train.ids)) if a != b), min(len(ids), len(train.ids)))
        raise ValueError(f"{path} was trained on other images: {len(ids)} ids against {len(train.ids)}, first "
                         f"difference at position {at}: {ids[at] if at < len(ids) else None!r} against "
                         f"{train.ids[at] if at < len(train.ids) else None!r}")
    digest = training.get("digest")
    if digest is not None and digest != (actual := train.digest(areas=config.area_weight > 0)):
        raise ValueError(f"{path} was trained on the same ImageIds but other images, labels, masks, "
                         "gate marks (--synth-maps-only) or areas (--area-weight) "
                         f"(training.digest {str(digest)[:12]}… against {actual[:12]}…)")
    wanted = asdict(config)
    saved = {**LEGACY_CONFIG, **saved}
    for key in sorted(set(saved) | set(wanted)):
        if key not in _RUN_ONLY and saved.get(key) != wanted.get(key):
            raise ValueError(f"{path} was trained with {key}={saved.get(key)!r}, this run has {wanted.get(key)!r}")
    return model
