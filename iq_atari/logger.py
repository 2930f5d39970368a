"""One logger for scalars: a long-format CSV (step, tag, value, wall time) and TensorBoard.

Tags are namespaced `train/`, `eval/`, `perf/`. On resume from update N, CSV rows and TensorBoard
events after N (written before an interruption) are dropped, so curves have no duplicates.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from iq_atari.utils import atomic_path, write_error

CSV_NAME = "metrics.csv"
CSV_HEADER = ["step", "tag", "value", "wall_time"]


class Logger:
    """Append scalars to `<run_dir>/metrics.csv` and, optionally, TensorBoard events there."""

    def __init__(
        self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / CSV_NAME
        if resume_step is not None and self.csv_path.exists():
            _truncate_csv(self.csv_path, resume_step)
        new = not self.csv_path.exists()
        try:
            self._file = open(self.csv_path, "a", newline="")  # noqa: SIM115 (closed in close())
            self._csv = csv.writer(self._file)
            if new:
                self._csv.writerow(CSV_HEADER)
        except OSError as err:
            raise write_error(self.csv_path, err, atomic=False) from err
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir), purge_step=resume_step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image to TensorBoard (nothing when TensorBoard is off)."""
        if self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record each scalar (anything `float()` accepts) at `step`."""
        now = time.time()
        try:
            for tag, value in scalars.items():
                value = float(value)
                self._csv.writerow([step, tag, repr(value), f"{now:.3f}"])
                if self._writer is not None:
                    self._writer.add_scalar(tag, value, step, walltime=now)
            self._file.flush()
        except OSError as err:  # a full disk: name the file, not just the errno
            raise write_error(self.csv_path, err, atomic=False) from err

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:  # rows still buffered after a failed write
            raise write_error(self.csv_path, err, atomic=False) from err
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _truncate_csv(path: Path, last_step: int) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= last_step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def read_scalars(path: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one tag from a metrics.csv."""
    steps, values = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["tag"] == tag:
                steps.append(int(row["step"]))
                values.append(float(row["value"]))
    return np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64)


def plot_curve(
    run_dir: str | Path,
    title: str,
    expert_return: float | None = None,
    out: str | Path | None = None,
) -> Path:
    """Plot eval mean return (+- std) against updates from a run's metrics.csv to curve.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    steps, mean = read_scalars(run_dir / CSV_NAME, "eval/mean_return")
    _, std = read_scalars(run_dir / CSV_NAME, "eval/std_return")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, mean, marker="o", label="agent (greedy)")
    if len(std) == len(mean):
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    if expert_return is not None:
        ax.axhline(expert_return, color="k", linestyle="--", label="the demos' mean")
    ax.set_xlabel("gradient updates")
    ax.set_ylabel("eval return (raw score)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curve.png"
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
