"""What a run that writes a file did: the run's counts in, one summary (and its one-line report) out.

Returned by :func:`steelfast.inference.run.segment_to_file`, by
:func:`steelfast.inference.record_writer.records_to_file` and by
:func:`steelfast.inference.ray_engine.segment_with_ray` with an ``output``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SegmentSummary"]


@dataclass
class SegmentSummary:
    """What :func:`steelfast.inference.run.segment_to_file` (or another file-writing run) did.

    Attributes:
        output: The submission file.
        images: Images in the output.
        processed: Images run through the model in this call.
        resumed: Images taken from an earlier, interrupted run.
        defects: Images with a defect, per ClassId.
        failures: ``{file name: reason}`` of files left out (unreadable, not a regular file, too
            large, another size), also those an earlier run of a resume found.
        failures_file: The failures CSV, or None when there were none.
        notes: ``{file name: note}`` of images written with a warning (resized).
        seconds: Wall time of this call.
    """

    output: Path
    images: int
    processed: int
    resumed: int
    defects: dict[int, int]
    failures: dict[str, str] = field(default_factory=dict)
    failures_file: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Images processed in this call per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One-line human summary."""
        per_class = ", ".join(f"class {c}: {n}" for c, n in sorted(self.defects.items()))
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        resized = f" ({len(self.notes)} resized)" if self.notes else ""
        return (
            f"{self.images} images{resumed}{resized} -> {self.output}; images with defects: {per_class}; "
            f"{self.images_per_second:.1f} images/s; {len(self.failures)} failures"
            + (f" (listed in {self.failures_file})" if self.failures_file else "")
        )
