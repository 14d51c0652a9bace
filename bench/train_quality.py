"""Train the baseline U-Net on seeded synthetic data within a time budget; report its quality.

Usage (the full run: about 15 minutes on a 2-core CPU)::

    python bench/train_quality.py --out runs/quality
    python bench/train_quality.py --out runs/quality --export steelfast/weights/synthetic-unet.safetensors

With flip TTA, post-processing re-tuned on flip-averaged validation probabilities (inside the same budget)::

    python bench/train_quality.py --out runs/quality6 --data runs/quality/data --lr 3e-3 --lr-schedule cosine \\
        --crop-width 256 --batch-size 16 --tta

Score an existing checkpoint on the same held-out images without training (``--tta`` re-tunes on
flip-averaged validation probabilities first; about 80 s)::

    python bench/train_quality.py --out runs/quality2_tta --data runs/quality/data --evaluate runs/quality2/best.safetensors --tta

A quick check that everything works (about a minute)::

    python bench/train_quality.py --out /tmp/q --n-train 32 --n-val 8 --n-test 8 --budget-min 1

Train-speed comparison only (fp32 eager vs bfloat16 autocast + channels_last)::

    python bench/train_quality.py --speed-only                                   # 256×256 crops
    python bench/train_quality.py --speed-only --speed-width 1600 --speed-batch 4  # full images

Steps: :func:`steelfast.data.synth.make_dataset` writes ``n_train + n_val`` training images and
``n_test`` held-out test images (with ``test_labels.csv``); the training images are split (stratified) into
train and validation; :func:`steelfast.training.loop.train` trains until the epochs or the budget run out,
tuning per-class threshold and minimum area on the validation images; the best checkpoint is
then scored on the held-out test images with those parameters. Results go to
``<out>/results.json`` and are printed:

* ``test.score``: competition score (mean Dice over all (image, class) pairs; goal >= 0.95);
* ``test.dice_defects``: mean Dice over pairs whose truth has a defect (goal >= 0.70);
* ``test.empty_baseline``: the score of an all-empty submission on the same images;
* the same for the validation images (optimistic: the post-processing was tuned on them);
* ``train_images_per_s`` (training crops) and ``infer_images_per_s`` (full 256×1600 images).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import torch

from steelfast.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from steelfast.data.dataset import SteelDataset
from steelfast.data.synth import make_dataset
from steelfast.images import list_images
from steelfast.labels import read_labels
from steelfast.metrics import kaggle_score
from steelfast.training.config import TrainConfig
from steelfast.training.data import load_data
from steelfast.training.loop import train
from steelfast.training.validation import evaluate

__all__ = ["main", "measure_speed", "provenance", "run"]


def _empty_score(truth: pd.DataFrame, ids: list[str], shape: tuple[int, int]) -> float:
    empty = pd.DataFrame(
        {
            "ImageId": pd.Series([], dtype=str),
            "ClassId": pd.Series([], dtype=int),
            "EncodedPixels": pd.Series([], dtype=str),
        }
    )
    return float(
        kaggle_score(empty, truth[["ImageId", "ClassId", "EncodedPixels"]], images=ids, shape=shape)
    )


def provenance(meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Metadata for a shipped checkpoint: says it was trained on synthetic data, without local paths."""
    meta = dict(meta)
    training = dict(meta.get("training", {}))
    data = dict(training.get("data", {}))
    data.pop("data_dir", None)
    data["source"] = (
        f"synthetic: steelfast.data.synth.make_dataset(seed={args.seed}), {args.n_train} training + {args.n_val} "
        f"validation images; no real Severstal images; trained by bench/train_quality.py"
    )
    training["data"] = data
    meta["training"] = training
    return meta


def _summary(
    ev: Any, truth: pd.DataFrame, ids: list[str], shape: tuple[int, int]
) -> dict[str, Any]:
    rep = ev.report
    return {
        "images": ev.images,
        "score": ev.score,
        "dice_defects": float(rep.loc["all", "dice_defects"]),
        "empty_baseline": _empty_score(truth, ids, shape),
        "per_class": {
            str(c): {
                "dice": float(rep.loc[c, "dice"]),
                "dice_defects": None
                if pd.isna(rep.loc[c, "dice_defects"])
                else float(rep.loc[c, "dice_defects"]),
            }
            for c in (1, 2, 3, 4)
        },
        "seconds": ev.seconds,
    }


def _tune_and_test_with_tta(
    checkpoint: Path, data_dir: Path, data: Any, test_ids: list[str], truth: pd.DataFrame, args: argparse.Namespace
) -> tuple[dict[str, Any], Any, float]:
    """Re-tune post-processing on flip-averaged validation probabilities, then score the test images with TTA.

    Returns:
        (postprocess metadata with ``"tta": True``, test evaluation, tuned validation score).
    """
    from steelfast.inference.segmenter import Segmenter
    from steelfast.training.tune import tune_on_images

    segmenter = Segmenter(checkpoint, backend="torch", batch_size=8, tta=True)
    tuned = tune_on_images(segmenter, data_dir / "train_images", data.val_truth, data.val_ids, progress=args.progress)
    post = {"thresholds": tuned.thresholds, "min_areas": tuned.min_areas, "tta": True}
    segmenter.thresholds, segmenter.min_areas = list(tuned.thresholds), list(tuned.min_areas)
    return post, _score_test_folder(segmenter, data_dir, truth, test_ids, args), tuned.score


def _score_test_folder(
    segmenter: Any, data_dir: Path, truth: pd.DataFrame, test_ids: list[str], args: argparse.Namespace
) -> SimpleNamespace:
    """Segment the test images with ``segmenter``; the result has the fields :func:`_summary` reads."""
    from steelfast.inference.pipeline import segment_folder
    from steelfast.metrics import kaggle_score_report

    start = time.perf_counter()
    frame = segment_folder(data_dir / "test_images", segmenter=segmenter, progress=args.progress)
    seconds = time.perf_counter() - start
    report = kaggle_score_report(frame, truth[["ImageId", "ClassId", "EncodedPixels"]], images=test_ids)
    return SimpleNamespace(images=len(test_ids), score=float(report.loc["all", "dice"]), report=report, seconds=seconds)


def _train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool
) -> None:
    from steelfast.losses import bce_dice_loss

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = bce_dice_loss(logits, y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def measure_speed(
    height: int = 256, width: int = 256, batch: int = 8, steps: int = 3, rounds: int = 3
) -> dict[str, float]:
    """Training images/s of the baseline U-Net in four set-ups (fp32/bf16 × NCHW/channels_last).

    The set-ups are timed in interleaved rounds and the best round of each is kept, so a
    burst of load from other processes on a shared machine hits all of them alike.

    Args:
        height, width: Crop size (divisible by 32).
        batch: Images per step.
        steps: Timed steps per round (after one warm-up step).
        rounds: Interleaved rounds.

    Returns:
        Images/s for ``fp32_eager``, ``fp32_channels_last``, ``bf16_eager`` and
        ``bf16_channels_last``, and ``speedup`` (the last over the first).
    """
    from steelfast.models import UNet

    setups = {}
    for name, bf16, channels_last in (
        ("fp32_eager", False, False),
        ("fp32_channels_last", False, True),
        ("bf16_eager", True, False),
        ("bf16_channels_last", True, True),
    ):
        torch.manual_seed(0)
        model = UNet()
        x = torch.randn(batch, 3, height, width)
        y = (torch.rand(batch, 4, height, width) > 0.9).float()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        _train_step(model, opt, x, y, bf16)  # warm-up: kernel selection, allocator
        setups[name] = (model, opt, x, y, bf16)
    out = dict.fromkeys(setups, 0.0)
    for _ in range(rounds):
        for name, args in setups.items():
            start = time.perf_counter()
            for _ in range(steps):
                _train_step(*args)
            out[name] = max(out[name], batch * steps / (time.perf_counter() - start))
    out["speedup"] = out["bf16_channels_last"] / out["fp32_eager"]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate data, train within the budget, evaluate; returns the results dict."""
    t0 = time.perf_counter()
    budget_s = args.budget_min * 60.0
    out = Path(args.out)
    data_dir = Path(args.data) if args.data else out / "data"
    if not (data_dir / "train.csv").is_file():
        make_dataset(
            data_dir, args.n_train + args.n_val, args.n_test, seed=args.seed, progress=args.progress
        )
    gen_s = time.perf_counter() - t0

    val_fraction = args.n_val / (args.n_train + args.n_val)
    n_test = len(list_images(data_dir / "test_images")) if args.n_test else 0
    # Keep time for the held-out evaluation (about one validation pass per 200 images), and with
    # --tta for tuning on flip-averaged validation probabilities and a TTA test pass (three
    # compiled forward passes per image, ~40 passes/s here, plus compilation).
    reserve_s = 0.1 * n_test + 5.0
    if args.tta:
        reserve_s += 0.1 * (args.n_val + n_test) + 20.0
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crop_width=args.crop_width or None,
        only_defects=args.only_defects,
        dice_mode=args.dice_mode,
        class_balance=args.class_balance,
        lr_schedule=args.lr_schedule,
        val_fraction=val_fraction,
        flips=args.flips,
        seed=args.seed,
        threads=args.threads,
        time_budget_s=max(1.0, budget_s - gen_s - reserve_s),
        val_batch_size=args.val_batch_size,
        progress=args.progress,
    )
    data = load_data(data_dir, config)
    result = train(data_dir, out, config, data=data)
    train_s = time.perf_counter() - t0 - gen_s
    if result.best_path is None or result.final is None:
        raise RuntimeError("training finished no epoch; raise --budget-min")

    model, meta = load_checkpoint(result.best_path)
    model = model.to(memory_format=torch.channels_last)
    norm = meta["normalization"]
    post = meta["postprocess"]
    val_summary = dict(result.final)
    results: dict[str, Any] = {
        "data": {
            "dir": str(data_dir),
            "seed": args.seed,
            "train": meta["training"]["data"]["train_images"],
            "val": meta["training"]["data"]["val_images"],
            "test": n_test,
        },
        "config": {k: v for k, v in vars(args).items() if k not in ("progress",)},
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "postprocess": post,
        "train_images_per_s": result.images_per_s,
        "seconds": {"data": gen_s, "train_and_validate": train_s},
        "threads": torch.get_num_threads(),
    }
    shape = (meta["input"]["height"], meta["input"]["width"])
    if n_test:
        test_ids = [p.name for p in list_images(data_dir / "test_images")]
        truth = read_labels(data_dir / "test_labels.csv", images=test_ids)
        ds = SteelDataset(
            data_dir / "test_images",
            truth,
            test_ids,
            channels=meta["input"]["channels"],
            mean=norm["mean"],
            std=norm["std"],
        )
        if args.tta:
            post, ev, val_score = _tune_and_test_with_tta(result.best_path, data_dir, data, test_ids, truth, args)
            meta["postprocess"] = post
            results["postprocess_tta"] = {**post, "validation_score": val_score}
        else:
            ev = evaluate(
                model,
                ds,
                truth,
                test_ids,
                thresholds=post["thresholds"],
                min_areas=post["min_areas"],
                batch_size=args.val_batch_size or 8,
                progress=args.progress,
            )
        results["test"] = _summary(ev, truth, test_ids, shape)
        results["infer_images_per_s"] = ev.images / ev.seconds
    # Validation figures (optimistic: post-processing was tuned on these images).
    results["validation"] = {
        "score": val_summary["score"],
        "dice_defects": val_summary["dice_defects"],
        "empty_baseline": _empty_score(data.val_truth, data.val_ids, shape),
        "per_class": val_summary["per_class"],
    }
    results["seconds"]["total"] = time.perf_counter() - t0
    results["within_budget"] = results["seconds"]["total"] <= budget_s

    # Record the figures in the checkpoint too, then optionally export it (e.g. as the default).
    training = dict(meta["training"])
    training["benchmark"] = {
        k: results[k] for k in ("test", "validation", "train_images_per_s") if k in results
    }
    save_checkpoint(
        result.best_path,
        model,
        {**{k: meta[k] for k in ("input", "normalization", "postprocess")}, "training": training},
    )
    if args.export:
        save_checkpoint(args.export, model, provenance(read_metadata(result.best_path), args))
        results["exported"] = str(Path(args.export).resolve())
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Score an existing checkpoint on the held-out images of ``--data`` (no training).

    With ``--tta``, post-processing is first re-tuned on flip-averaged probabilities of the same
    validation split the training used (``--n-train``, ``--n-val``, ``--seed``). Writes
    ``<out>/evaluation.json``; the checkpoint itself is not changed.
    """
    from steelfast.inference.segmenter import Segmenter

    data_dir = Path(args.data) if args.data else Path(args.out) / "data"
    if not (data_dir / "test_labels.csv").is_file():
        raise FileNotFoundError(f"{data_dir} has no test_labels.csv: generate the data with a training run first")
    config = TrainConfig(val_fraction=args.n_val / (args.n_train + args.n_val), seed=args.seed, only_defects=False)
    data = load_data(data_dir, config)
    test_ids = [p.name for p in list_images(data_dir / "test_images")]
    truth = read_labels(data_dir / "test_labels.csv", images=test_ids)
    meta = read_metadata(args.evaluate)
    shape = (meta["input"]["height"], meta["input"]["width"])
    results: dict[str, Any] = {"checkpoint": str(args.evaluate), "tta": bool(args.tta)}
    if args.tta:
        post, ev, val_score = _tune_and_test_with_tta(Path(args.evaluate), data_dir, data, test_ids, truth, args)
        results["postprocess"] = {**post, "validation_score": val_score}
    else:
        segmenter = Segmenter(args.evaluate, backend="torch", batch_size=8, tta=False)
        ev = _score_test_folder(segmenter, data_dir, truth, test_ids, args)
        results["postprocess"] = meta["postprocess"]
    results["test"] = _summary(ev, truth, test_ids, shape)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "evaluation.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        default="runs/quality",
        help="Run folder (checkpoints, history, results.json, data/).",
    )
    p.add_argument(
        "--data", default=None, help="Dataset folder to reuse or create (default: OUT/data)."
    )
    p.add_argument(
        "--export", default=None, help="Also write the best checkpoint here (a .safetensors path)."
    )
    p.add_argument("--n-train", type=int, default=800, help="Training images.")
    p.add_argument(
        "--n-val", type=int, default=200, help="Validation images (tuning and model selection)."
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=200,
        help="Held-out test images for the reported score (0 = none).",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the data and the training.")
    p.add_argument(
        "--budget-min",
        type=float,
        default=15.0,
        help="Wall-clock budget in minutes, data generation included.",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=100,
        help="Upper bound on epochs (the budget usually stops first).",
    )
    p.add_argument("--batch-size", type=int, default=16, help="Training batch size.")
    p.add_argument("--val-batch-size", type=int, default=8, help="Validation batch size.")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate.")
    p.add_argument(
        "--crop-width", type=int, default=512, help="Training crop width (0 = full 1600)."
    )
    p.add_argument(
        "--only-defects",
        action="store_true",
        help="Train on defective images only (the Kaggle baseline).",
    )
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"], help="Learning-rate schedule.")
    p.add_argument(
        "--class-balance", type=float, default=0.0,
        help="Sampling power of steelfast.data.dataset.balanced_weights (0 = uniform, 0.5 = square-root).",
    )
    p.add_argument(
        "--evaluate", default=None, metavar="CHECKPOINT",
        help="Do not train: score this checkpoint on the held-out images of --data (with --tta: after re-tuning "
        "post-processing on flip-averaged validation probabilities); writes OUT/evaluation.json.",
    )
    p.add_argument(
        "--tta", action="store_true",
        help="After training, re-tune thresholds and minimum areas on flip-averaged validation probabilities "
        "(steelfast.training.tune.tune_on_images) and score the test images with flip TTA; the checkpoint records tta=true.",
    )
    p.add_argument("--dice-mode", default="global", choices=["global", "class", "pair"], help="Soft Dice pooling of the loss.")
    p.add_argument(
        "--flips", action=argparse.BooleanOptionalAction, default=True, help="Random flips."
    )
    p.add_argument(
        "--threads", type=int, default=None, help="Torch CPU threads (default: all cores)."
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="Hide progress bars."
    )
    p.add_argument(
        "--speed-only",
        action="store_true",
        help="Only compare fp32 eager and bf16+channels_last training speed.",
    )
    p.add_argument("--speed-width", type=int, default=256, help="Crop width for --speed-only.")
    p.add_argument("--speed-batch", type=int, default=8, help="Batch size for --speed-only.")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the results as JSON."""
    args = _parser().parse_args(argv)
    if args.speed_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        speed = measure_speed(width=args.speed_width, batch=args.speed_batch)
        print(
            json.dumps(
                {
                    "threads": torch.get_num_threads(),
                    "size": [256, args.speed_width],
                    "batch": args.speed_batch,
                    **speed,
                },
                indent=2,
            )
        )
        return 0
    results = evaluate_checkpoint(args) if args.evaluate else run(args)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
