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

    If the body raises, the temp file is removed and an existing `path` is left untouched. An
    OSError on the way (no such directory, no permission, a full disk, `ulimit -f`) is raised
    again as an OSError of the same errno that names `path` and says the old file is kept, so
    runners print one line about the file the user knows (not about the temp file).
    `suffix` keeps the temp file's extension for writers that look at it (np.savez, video).
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp"
        )
        os.close(fd)
        tmp_path = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual new-file mode
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err, tmp_path) from err
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_error(
    path: Path, err: OSError, tmp_path: Path | None = None, atomic: bool = True
) -> OSError:
    """`err` as an OSError about writing `path` (same errno, hence the same subclass), naming
    `path` rather than the temp file `tmp_path` it was being written to; `atomic`: `path` was
    not touched (else it was being appended to)."""
    if getattr(err, "written_path", None) is not None:  # already said, by a nested write
        return err
    kept = "; the previous file is unchanged" if atomic and path.exists() else ""
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is not None and Path(err.filename) not in (path, path.parent, tmp_path):
        reason = f"{reason} ({err.filename})"
    new = OSError(err.errno, f"not written: {reason}{kept}", str(path))
    new.written_path = path
    return new


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


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` torch CPU threads (unchanged when 0 or None), then restore."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of all of `optimizer`'s parameter groups."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast runs on hardware instructions here: a CUDA device that supports it,
    or a CPU with avx512_bf16 or amx_bf16 (without them it is emulated, slower than float32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    facts = cpu_facts()
    return bool(facts["avx512_bf16"] or facts["amx_bf16"])


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


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` (its `.lock` file) for the body; raise InputError at
    once if another process holds it. The kernel drops the lock when its holder exits, however
    it ends, so a killed run never leaves its directory locked. A directory made here that holds
    nothing but the lock when the body ends (a run refused before writing anything) is removed,
    so bad input leaves no empty run directories behind."""
    import fcntl

    from iq_atari.errors import InputError

    run_dir = Path(run_dir)
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / ".lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise InputError(
                f"{run_dir}: in use by another training process (pid {holder}); wait for it to "
                f"end, or pass another --run-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)  # the pid is only meant to be read while the lock is held
            if made and [p.name for p in run_dir.iterdir()] == [lock_path.name]:
                with contextlib.suppress(OSError):  # another process may have just made a file
                    lock_path.unlink()
                    run_dir.rmdir()
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def cpu_facts() -> dict[str, object]:
    """This machine's CPU as results files record it: model name (from /proc/cpuinfo), core
    count, and whether it has the instructions that make bf16 autocast fast."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }
