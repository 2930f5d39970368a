"""Atomic writes: an interrupted write leaves the old file intact and no temp file behind."""

import os

import pytest

from iq_atari.utils import atomic_path, atomic_write_text


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
