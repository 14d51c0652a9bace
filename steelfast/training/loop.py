"""Train the U-Net on a Kaggle-layout folder (``train.csv`` + ``train_images/``).

Flow: labels + image list -> stratified train/validation split ->
:class:`~steelfast.data.dataset.SteelDataset`
-> model (channels_last, bfloat16 autocast on the CPU / float16 on CUDA) -> BCE + soft Dice ->
Adam. After every epoch, rank 0 validates on the full-size validation images:

* validation loss and soft Dice;
* the **competition score** (mean Dice over all (image, class) pairs, defect-free images included):
  probabilities -> :func:`steelfast.rle.encode_probs` -> RLE ->
  :func:`steelfast.metrics.kaggle_score_report`
  (compiled), at threshold 0.5 and no minimum area, per class too;
* the same score after tuning the per-class threshold and minimum area on this validation pass
  (:mod:`steelfast.training.tune`); the best checkpoint is chosen on it and stores the tuned parameters.

Files in ``out_dir`` (written by rank 0 only, each atomically):

* ``best.safetensors`` + ``best.json``: best epoch, with tuned post-processing (inference default);
* ``last.safetensors`` + ``last.json`` + ``last.state.pt``: latest epoch, for ``resume``;
  a Ctrl-C also writes these before the ``KeyboardInterrupt`` propagates (its message says
  how to resume; nothing is printed);
* ``history.csv`` and ``history.png`` (Dice per epoch, train and validation).

A fixed ``seed`` gives the same run (same split, initial weights, order and augmentations) on the
same machine and thread count.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from steelfast._device import autocast_dtype, autocast_name, resolve_device
from steelfast._io import PathLike
from steelfast.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from steelfast.models import build_model
from steelfast.severstal import CLASSES
from steelfast.training.config import (
    TrainConfig,
    TrainData,
    TrainResult,
)
from steelfast.training.data import load_data, make_train_loader
from steelfast.training.distributed import (
    DistInfo,
    all_true,
    broadcast_object,
    init_from_env,
)
from steelfast.training.epoch import train_epoch
from steelfast.training.history import (
    epoch_line,
    final_summary,
    write_history,
)
from steelfast.training.state import load_training_state, save_training_state, state_path_for
from steelfast.training.tune import (
    scaled_min_areas,
    tune_postprocess,
)
from steelfast.training.validation import evaluate

__all__ = ["train"]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _build_or_resume(cfg: TrainConfig, resume: PathLike | None):
    if resume is None:
        torch.manual_seed(cfg.seed)
        return build_model(dict(cfg.architecture)), None, None
    model, meta = load_checkpoint(resume, map_location="cpu")
    # Restores the torch/NumPy/Python RNG states too: the run continues as if never stopped.
    state = load_training_state(state_path_for(resume), restore_rng=True)
    return model, meta, state


def train(
    data_dir: PathLike,
    out_dir: PathLike,
    config: TrainConfig | None = None,
    *,
    resume: PathLike | None = None,
    data: TrainData | None = None,
    epoch_log: Callable[[str], object] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train, validate every epoch, tune post-processing and write checkpoints.

    Args:
        data_dir: Kaggle-layout folder (``train.csv``, ``train_images/``).
        out_dir: Run folder (created); see the module docstring for its files.
        config: Options; fields can also be given as keyword overrides
            (``train(d, o, epochs=3, crop_width=512)``).
        resume: A ``last.safetensors`` (or any checkpoint with its ``.state.pt``) to continue
            from: weights, optimiser, epoch, history, best score and RNG states are restored.
        data: Pre-built datasets (skips reading ``data_dir``; used by tests and benchmarks).
        epoch_log: Called on rank 0 after every epoch with one line: epoch, training loss,
            validation loss, soft Dice and score (tuned too), images/s and the epoch's seconds
            (training + validation). Default: the line goes to ``tqdm.write`` when
            ``progress`` is on and nowhere otherwise; ``print`` shows it without bars.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError, TypeError: Bad options (the message names the field and value).
        FileNotFoundError: Missing data or resume files.
        KeyboardInterrupt: After saving ``last.*`` on Ctrl-C.
    """
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    device = resolve_device(cfg.device)
    info = init_from_env(device.type)
    if not info.initialized_here:
        return _train(Path(data_dir), Path(out_dir), cfg, device, info, resume, data, epoch_log)
    import torch.distributed as dist

    try:
        result = _train(Path(data_dir), Path(out_dir), cfg, device, info, resume, data, epoch_log)
        # Leave together: a rank tearing down its gloo connections while a peer still uses them
        # makes the peer abort.
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    device: torch.device,
    info: DistInfo,
    resume: PathLike | None,
    data: TrainData | None,
    epoch_log: Callable[[str], object] | None = None,
) -> TrainResult:
    start_time = time.perf_counter()
    if epoch_log is None and cfg.progress:
        epoch_log = tqdm.write
    if device.type == "cuda" and info.distributed:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, _cpu_count() // info.world_size))
    _seed_all(cfg.seed)
    dtype = autocast_dtype(cfg.amp, device)
    show = cfg.progress and info.is_main

    model, resume_meta, state = _build_or_resume(cfg, resume)
    if resume_meta is not None:
        cfg = dataclasses.replace(cfg, architecture=dict(resume_meta["architecture"]))
        norm = resume_meta["normalization"]
        cfg = dataclasses.replace(cfg, mean=norm["mean"], std=norm["std"])
    if data is None:
        data = load_data(data_dir, cfg)
    summary = dict(data.summary)

    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=(device.type == "cuda" and dtype == torch.float16)
    )

    history: list[dict[str, Any]] = []
    first_epoch = 0
    best_score = -math.inf
    best_epoch: int | None = None
    best_post: dict[str, list] = {"thresholds": [0.5] * 4, "min_areas": [0] * 4}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = list(state.get("history", []))
        first_epoch = int(state["epoch"])
        best_score = float(state.get("best_score", -math.inf))
        best_epoch = state.get("best_epoch")
        best_post = state.get("best_postprocess", best_post)

    net = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    loader = make_train_loader(data, cfg, info)
    val_bs = cfg.val_batch_size or cfg.batch_size
    sample_image, _ = data.val[0]
    val_shape = (int(sample_image.shape[1]), int(sample_image.shape[2]))
    min_area_grid = scaled_min_areas(val_shape, cfg.tune_min_areas)
    # Validation images are full width; training images may be crops.
    val_cost = len(data.val) * val_shape[1] / (cfg.crop_width or val_shape[1])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.safetensors", out_dir / "last.safetensors"

    def metadata(post: dict[str, list], extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "input": {
                "height": val_shape[0],
                "width": val_shape[1],
                "channels": int(model.config["in_channels"]),
            },
            "normalization": dict(summary["normalization"]),
            "postprocess": post,
            "training": {
                "data": summary,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"},
                "world_size": info.world_size,
                "device": str(device),
                "autocast": autocast_name(dtype),
                **extra,
            },
        }

    def save_last(epoch_done: int, note: str) -> None:
        save_checkpoint(
            last_path, model, metadata(best_post, {"epochs_done": epoch_done, "note": note})
        )
        save_training_state(
            state_path_for(last_path),
            {
                "epoch": epoch_done,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_postprocess": best_post,
            },
        )

    train_images_total = 0
    train_seconds_total = 0.0
    val_seconds_est: float | None = None
    epoch = first_epoch
    try:
        for epoch in range(first_epoch, cfg.epochs):
            row, stop = train_epoch(
                net,
                loader,
                optimizer,
                scaler,
                cfg,
                device,
                dtype,
                info,
                epoch,
                show,
                start_time,
                val_seconds_est,
                val_cost,
            )
            train_images_total += row["train_images"]
            train_seconds_total += row["train_seconds"]
            improved = False
            if info.is_main:
                ev = evaluate(
                    model,
                    data.val,
                    data.val_truth,
                    data.val_ids,
                    batch_size=val_bs,
                    device=device,
                    amp=cfg.amp,
                    channels_last=cfg.channels_last,
                    stats_thresholds=cfg.tune_thresholds if cfg.tune else None,
                    num_workers=cfg.num_workers,
                    progress=show,
                )
                val_seconds_est = ev.seconds
                row.update(val_loss=ev.loss, val_dice=ev.soft_dice, val_score=ev.score)
                for c, s in zip(CLASSES, ev.class_scores()):
                    row[f"val_score_c{c}"] = s
                post = {"thresholds": [0.5] * 4, "min_areas": [0] * 4}
                score = ev.score
                if ev.stats is not None:
                    tuned = tune_postprocess(stats=ev.stats, min_areas=min_area_grid)
                    post = {"thresholds": tuned.thresholds, "min_areas": tuned.min_areas}
                    score = tuned.score
                    row["val_score_tuned"] = tuned.score
                    for c, s in zip(CLASSES, tuned.class_dice):
                        row[f"val_score_tuned_c{c}"] = s
                row["val_seconds"] = ev.seconds
                history.append(row)
                improved = score > best_score
                if improved:
                    best_score, best_epoch, best_post = score, epoch + 1, post
                    save_checkpoint(
                        best_path, model, metadata(post, {"epoch": epoch + 1, "history": history})
                    )
                save_last(epoch + 1, "end of epoch")
                write_history(out_dir, history)
                if epoch_log is not None:
                    epoch_log(epoch_line(row, cfg.epochs, improved))
            val_seconds_est = broadcast_object(val_seconds_est, info)  # type: ignore[assignment]
            if all_true(stop, info):
                break
    except KeyboardInterrupt as exc:
        if not info.is_main:
            raise
        save_last(epoch, "interrupted (Ctrl-C); the interrupted epoch restarts on resume")
        # The hint travels in the exception, not printed here: the CLI prints its own one line.
        raise KeyboardInterrupt(f"interrupted: saved {last_path} (resume with resume={str(last_path)!r})") from exc

    final = None
    if info.is_main and best_epoch is not None and best_path.is_file():
        best_model, _ = load_checkpoint(best_path, map_location=device)
        if cfg.channels_last:
            best_model = best_model.to(memory_format=torch.channels_last)
        ev = evaluate(
            best_model,
            data.val,
            data.val_truth,
            data.val_ids,
            thresholds=best_post["thresholds"],
            min_areas=best_post["min_areas"],
            batch_size=val_bs,
            device=device,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            num_workers=cfg.num_workers,
            progress=show,
        )
        final = final_summary(ev, best_epoch)
        ips = train_images_total / train_seconds_total if train_seconds_total > 0 else 0.0
        final["train_images_per_s"] = ips * info.world_size
        save_checkpoint(
            best_path,
            best_model,
            metadata(best_post, {"epoch": best_epoch, "history": history, "validation": final}),
        )
    # Rank 0 validated and chose; every rank returns the same summary.
    final, history, best_epoch, best_post = broadcast_object(  # type: ignore[misc]
        (final, history, best_epoch, best_post), info
    )
    ips = train_images_total / train_seconds_total if train_seconds_total > 0 else 0.0
    return TrainResult(
        out_dir=out_dir,
        best_path=best_path if best_epoch is not None else None,
        last_path=last_path,
        history=history,
        best_epoch=best_epoch,
        postprocess=best_post,
        final=final,
        images_per_s=ips * info.world_size,
        rank=info.rank,
    )
