"""Small shared helpers: atomic file writes, seeding, device choice."""

from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in the destination's directory; on success fsync it and rename over `path`.

    If the body raises, the temp file is removed and an existing `path` is left untouched.
    `suffix` keeps the temp file's extension for writers that look at it (np.savez, video).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual new-file mode
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temp file + fsync + rename)."""
    atomic_write_bytes(path, text.encode())


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy's legacy global RNG and `random`; return a fresh numpy Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - for third-party code using the global RNG
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when present, else cpu; `cpu` / `cuda[:N]` as given, if present."""
    from iq_atari.errors import InputError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise InputError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if device != "cpu":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise InputError(
                f"--device {device}: this machine has {count} CUDA device(s) "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
    return torch.device(device)
