"""Bad-input probes through the real CLIs: each must exit with status 2 and one `error:` line
naming the culprit, print no traceback, and leave every existing file untouched."""

import hashlib
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

TRAIN = ["runners.train", "--no-progress", "--no-tensorboard", "--threads", "1", "--steps", "2"]


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory) -> Path:
    """A good 2-episode CartPole demo file, bad variants of it, and a tiny CartPole run."""
    root = tmp_path_factory.mktemp("probes")
    good = root / "good.npz"
    _cli(
        "runners.demos",
        "--game",
        "CartPole",
        "--episodes",
        "2",
        "--no-progress",
        "--out",
        str(good),
    )
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))

    def variant(name: str, meta_changes: dict | None = None, **array_changes) -> None:
        new_meta = {**meta, **(meta_changes or {})}
        new = {**arrays, **array_changes, "meta": np.array(json.dumps(new_meta))}
        np.savez(root / f"{name}.npz", **{k: v for k, v in new.items() if v is not None})

    variant("version", {"format_version": 99})
    variant("nan_actions", actions=np.full(arrays["actions"].shape, np.nan))
    variant("range_actions", actions=arrays["actions"] + 5)
    variant("lengths", actions=arrays["actions"][:-1], rewards=arrays["rewards"][:-1])
    variant("other_game", {"env_id": "Acrobot-v1"})
    variant("n_actions", {"n_actions": 3, "action_meanings": ["a0", "a1", "a2"]})
    variant("frame_stack", {"frame_stack": 4})
    (root / "empty.npz").write_bytes(b"")
    data = good.read_bytes()
    (root / "truncated.npz").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(root / "not_demo.npz", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with open(root / "expert.pkl", "wb") as f:
        pickle.dump({"states": [], "actions": []}, f)
    (root / "a_file").write_text("a regular file, used as a parent directory")
    run = root / "run"
    _cli(*TRAIN, "--demos", str(good), "--eval-interval", "2", "--eval-episodes", "1",
         "--reward-check-episodes", "0", "--run-dir", str(run))  # fmt: skip
    assert (run / "checkpoints" / "best.pt").is_file()
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, check=False
    )


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


# (id, argv with {d} for the probe directory, words the error line must contain)
PROBES = [
    ("unknown-game", [*TRAIN, "--game", "CartPol"], ["CartPol", "CartPole-v1"]),
    ("demos-missing", [*TRAIN, "--demos", "{d}/nope.npz"], ["nope.npz"]),
    ("demos-empty", [*TRAIN, "--demos", "{d}/empty.npz"], ["empty.npz"]),
    ("demos-truncated", [*TRAIN, "--demos", "{d}/truncated.npz"], ["truncated.npz"]),
    ("demos-not-demo", [*TRAIN, "--demos", "{d}/not_demo.npz"], ["not_demo.npz"]),
    ("demos-version", [*TRAIN, "--demos", "{d}/version.npz"], ["version.npz", "format_version"]),
    ("demos-nan-actions", [*TRAIN, "--demos", "{d}/nan_actions.npz"], ["nan_actions", "actions"]),
    ("demos-range", [*TRAIN, "--demos", "{d}/range_actions.npz"], ["range_actions", "actions"]),
    ("demos-lengths", [*TRAIN, "--demos", "{d}/lengths.npz"], ["lengths.npz", "actions"]),
    ("demos-game", [*TRAIN, "--demos", "{d}/other_game.npz"], ["other_game.npz", "Acrobot"]),
    ("demos-n-actions", [*TRAIN, "--demos", "{d}/n_actions.npz"], ["n_actions.npz", "action"]),
    ("demos-stack", [*TRAIN, "--demos", "{d}/frame_stack.npz"], ["frame_stack.npz", "frame_stack"]),
    (
        "checkpoint-game",
        [
            "runners.record",
            "--game",
            "Acrobot",
            "--checkpoint",
            "{d}/run/checkpoints/best.pt",
            "--no-progress",
            "--out",
            "{d}/video.mp4",
        ],  # fmt: skip
        ["best.pt", "CartPole"],
    ),
    ("steps-zero", ["runners.train", "--steps", "0"], ["--steps"]),
    ("batch-negative", ["runners.train", "--batch-size", "-3"], ["--batch-size"]),
    ("episodes-zero", ["runners.demos", "--game", "CartPole", "--episodes", "0"], ["--episodes"]),
    ("num-demos-zero", ["runners.train", "--num-demos", "0"], ["--num-demos"]),
    ("divergence", ["runners.train", "--divergence", "kl2"], ["--divergence", "kl2"]),
    ("value-term", ["runners.train", "--value-term", "v9"], ["--value-term", "v9"]),
    (
        "demos-out-unwritable",
        [
            "runners.demos",
            "--game",
            "CartPole",
            "--episodes",
            "1",
            "--no-progress",
            "--out",
            "{d}/a_file/demos.npz",
        ],  # fmt: skip
        ["a_file"],
    ),
    (
        "run-dir-unwritable",
        [*TRAIN, "--demos", "{d}/good.npz", "--run-dir", "{d}/a_file/run"],
        ["a_file"],
    ),
    (
        "pickle-untrusted",
        [
            "runners.demos",
            "--game",
            "CartPole",
            "--import-iq-learn",
            "{d}/expert.pkl",
            "--out",
            "{d}/imported.npz",
        ],  # fmt: skip
        ["expert.pkl", "--trust-pickle"],
    ),
]


@pytest.mark.parametrize("argv, words", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_bad_input_gives_one_error_line(probe_dir, argv, words):
    before = _snapshot(probe_dir)
    result = _cli(*[a.replace("{d}", str(probe_dir)) for a in argv])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert _snapshot(probe_dir) == before, "an existing file was modified"
