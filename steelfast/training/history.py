"""The trainer's record: per-epoch lines, ``history.csv``, ``history.png`` and the final summary."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from steelfast._io import atomic_path, atomic_save_png
from steelfast.severstal import CLASSES
from steelfast.training.config import EvalResult

__all__ = ["epoch_line", "final_summary", "plot_history", "progress_bar", "write_history"]


def progress_bar(iterable: Iterable, enabled: bool, **kwargs: Any) -> Iterable:
    """``iterable`` with a tqdm bar when ``enabled`` (left on screen only while it runs)."""
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, leave=False, **kwargs)


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Write ``history.csv`` and ``history.png`` (atomically) from one dict per epoch."""
    frame = pd.DataFrame(history)
    with atomic_path(out_dir / "history.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    plot_history(out_dir / "history.png", frame)


def plot_history(path: Path, frame: pd.DataFrame) -> None:
    """Plot the Dice columns of ``frame`` per epoch into a PNG at ``path`` (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = frame["epoch"]
    series = [
        ("train_dice", "train soft Dice", "-o"),
        ("val_dice", "validation soft Dice", "-o"),
        ("val_score", "validation score (0.5, no min area)", "--s"),
        ("val_score_tuned", "validation score (tuned post-processing)", "--^"),
    ]
    for column, label, style in series:
        if column in frame and frame[column].notna().any():
            ax.plot(epochs, frame[column], style, label=label, markersize=4)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Dice per epoch")
    fig.tight_layout()
    atomic_save_png(fig, path)


def final_summary(ev: EvalResult, best_epoch: int) -> dict[str, Any]:
    """JSON-ready figures of the best epoch's final validation pass, per class too."""
    rep = ev.report
    per_class = {
        str(c): {
            "dice": float(rep.loc[c, "dice"]),
            "dice_defects": None
            if pd.isna(rep.loc[c, "dice_defects"])
            else float(rep.loc[c, "dice_defects"]),
            "truth_defects": int(rep.loc[c, "truth_defects"]),
            "pred_defects": int(rep.loc[c, "pred_defects"]),
        }
        for c in CLASSES
        if c in rep.index
    }
    dd = rep.loc["all", "dice_defects"]
    return {
        "best_epoch": best_epoch,
        "images": ev.images,
        "score": ev.score,
        "dice_defects": None if pd.isna(dd) else float(dd),
        "loss": ev.loss,
        "soft_dice": ev.soft_dice,
        "per_class": per_class,
    }


def epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    """One line per epoch: losses, soft Dice, scores, images/s and seconds (``*best*`` if it improved)."""
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.4f}",
        f"val_loss {row['val_loss']:.4f}",
        f"val_dice {row['val_dice']:.4f}",
        f"score {row['val_score']:.4f}",
    ]
    if "val_score_tuned" in row:
        parts.append(f"tuned {row['val_score_tuned']:.4f}")
    parts.append(f"{row['train_images_per_s']:.1f} img/s")
    parts.append(f"{row['train_seconds'] + row['val_seconds']:.1f} s")
    return "  ".join(parts) + ("  *best*" if improved else "")


