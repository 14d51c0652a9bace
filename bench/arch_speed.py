"""CPU speed of the two bundled architectures in one process: the default gated EfficientNet-Lite0 U-Net
(half resolution inside the network) against the seed's baseline U-Net (``synthetic-unet``, full resolution).

Input: the first 48 real test JPEGs of ``../shared/data/severstal`` (or ``$STEELFAST_SHARED_DATA``), decoded
once beforehand. Each round times ``Segmenter.predict`` (model, post-processing and RLE; torch backend,
eager, the backend's default precision) on all of them for each model in turn; three rounds.

Run: ``cd /tmp && python /path/to/steelfast/bench/arch_speed.py``
"""

from __future__ import annotations

import time

from steelfast.data.real import shared_data_dir
from steelfast.images import list_images, read_gray
from steelfast.inference.segmenter import Segmenter
from steelfast.model_files import bundled_checkpoint_path


def main() -> None:
    files = list_images(shared_data_dir() / "test_images")[:48]
    grays = [read_gray(f) for f in files]
    models = {name: Segmenter(bundled_checkpoint_path(name), backend="torch", compile=False)
              for name in ("default", "synthetic-unet")}
    for seg in models.values():
        seg.predict(grays[:2])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(3):
        for name, seg in models.items():
            start = time.perf_counter()
            seg.predict(grays)
            rates[name].append(len(grays) / (time.perf_counter() - start))
    for name, seg in models.items():
        print(f"{name}: {' '.join(f'{r:.1f}' for r in rates[name])} images/s "
              f"({seg.backend.name}, {getattr(seg.backend, 'precision', '?')})")


if __name__ == "__main__":
    main()
