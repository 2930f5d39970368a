"""Atomic writes: an interrupted write leaves the old file intact and no temp file behind.
Device names: a CUDA device the machine lacks is a one-line input error."""

import os

import pytest
import torch

from iq_atari.errors import InputError
from iq_atari.utils import atomic_path, atomic_write_text, resolve_device


def test_interrupted_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "checkpoint.json"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half of the new con")  # killed midway
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["checkpoint.json"]


def test_completed_write_replaces_the_file_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "eval.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(target.parent) == ["eval.json"]


def test_missing_cuda_device_is_an_input_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="--device cuda: this machine has 0 CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InputError, match="--device cuda:1: this machine has 1 CUDA device"):
        resolve_device("cuda:1")
