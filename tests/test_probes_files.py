"""Bad files through the real CLIs: every file the tool reads (checkpoints, the replay buffer,
expert .zip files, sweep grids) is checked before use; a write that fails (a full disk, here
`ulimit -f`; a path that cannot be a file) keeps the previous file; a resume refuses flags that
conflict with its run, and a second process on a run directory. Each case must end with one
`error:` line naming the culprit, no traceback, and every input file as it was."""

import hashlib
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from iq_atari.config import TrainConfig
from iq_atari.train import train

CLI = [sys.executable, "-m"]
TRAIN = ["runners.train", "--no-progress", "--no-tensorboard", "--threads", "1"]
RECORD = ["runners.record", "--game", "CartPole", "--no-progress"]
EXPERTS = Path(__file__).resolve().parents[1] / "expert_demos" / "experts"
FAST = dict(
    game="CartPole",
    threads=1,
    eval_interval=2,
    eval_episodes=1,
    reward_check_episodes=0,
    progress=False,
    tensorboard=False,
)


@pytest.fixture(scope="session")
def files(tmp_path_factory, cartpole_one_demo) -> Path:
    """Good demos, a tiny offline and online CartPole run, and bad variants of their files."""
    root = tmp_path_factory.mktemp("file_probes")
    demos = root / "demos.npz"
    shutil.copy(cartpole_one_demo, demos)
    shutil.copy(cartpole_one_demo, root / "other_demos.npz")
    train(TrainConfig(demos=str(demos), steps=2, run_dir=str(root / "run"), **FAST))
    train(
        TrainConfig(
            demos=str(demos),
            steps=2,
            mode="online",
            learning_starts=10,
            replay_size=2_000,
            run_dir=str(root / "online"),
            **FAST,
        )
    )
    best = root / "run" / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)

    def checkpoint(name: str, **changes) -> None:
        torch.save({**state, **changes}, root / f"{name}.pt")

    checkpoint("newer", format=2)
    checkpoint("net", config={**state["config"], "hidden": "32"})
    checkpoint("algo", config={**state["config"], "algo": "bc"})
    checkpoint("shape", obs_shape=None)
    torch.save({"model": state["learner"]}, root / "foreign.pt")
    (root / "junk.pt").write_bytes(np.random.default_rng(0).bytes(2_000))
    data = best.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    for name in ("junk", "net"):  # runs whose last.pt is a bad one, to resume
        shutil.copytree(root / "run", root / f"resume_{name}")
        shutil.copy(root / f"{name}.pt", root / f"resume_{name}" / "checkpoints" / "last.pt")

    replay = root / "online" / "checkpoints" / "replay.npz"
    with np.load(replay) as npz:
        arrays = dict(npz)
    for name in ("replay_truncated", "replay_shape"):
        shutil.copytree(root / "online", root / name)
    data = replay.read_bytes()
    (root / "replay_truncated" / "checkpoints" / "replay.npz").write_bytes(data[: len(data) // 2])
    frames = arrays["frames"]
    other = {**arrays, "frames": np.zeros((10, *frames.shape[1:]), frames.dtype)}
    np.savez(root / "replay_shape" / "checkpoints" / "replay.npz", **other)

    (root / "junk.zip").write_bytes(b"PK not really a zip")
    with zipfile.ZipFile(root / "ppo-empty.zip", "w") as zf:
        zf.writestr("readme.txt", "a zip without stable-baselines3's members")

    grids = {
        "binary": b"\xff\xfe games",
        "resources": b'games = ["CartPole"]\nresources = 3\n',
        "game": b'games = ["CartPol"]\n',
        "train_type": b'games = ["CartPole"]\n[train]\nlr = "fast"\n',
    }
    for name, text in grids.items():
        (root / f"grid_{name}.toml").write_bytes(text)
    (root / "a_file").write_text("a regular file, used as a parent directory")
    return root


def _cli(*args: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # `ulimit -f`: writes past `fsize` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=limit if fsize is not None else None,
    )


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _one_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single `error:` line of a run that failed with `status`, and nothing after it."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def _record_checkpoint(name: str) -> list[str]:
    return [*RECORD, "--checkpoint", f"{{d}}/{name}.pt", "--out", "{d}/video.mp4"]


def _resume(run: str, *flags: str) -> list[str]:
    return [*TRAIN, "--resume", "--run-dir", f"{{d}}/{run}", "--steps", "4", *flags]


def _grid(name: str) -> list[str]:
    return ["runners.sweep", "--grid", f"{{d}}/grid_{name}.toml", "--out", "{d}/sweep"]


def _expert(game: str, path: str) -> list[str]:
    return ["runners.demos", "--game", game, "--expert", path, "--out", "{d}/new.npz"]


# (id, argv with {d} for the probe directory, words the error line must contain)
PROBES = [
    ("ckpt-junk", _record_checkpoint("junk"), ["junk.pt", "not a readable checkpoint"]),
    ("ckpt-truncated", _record_checkpoint("truncated"), ["truncated.pt", "damaged"]),
    ("ckpt-newer", _record_checkpoint("newer"), ["newer.pt", "format 2 is newer"]),
    ("ckpt-foreign", _record_checkpoint("foreign"), ["foreign.pt", "not an iq_atari checkpoint"]),
    ("ckpt-network", _record_checkpoint("net"), ["net.pt", "does not fit its network"]),
    ("ckpt-algo", _record_checkpoint("algo"), ["algo.pt", "bc learner does not fit"]),
    ("ckpt-fields", _record_checkpoint("shape"), ["shape.pt", "obs_shape"]),
    ("resume-junk", _resume("resume_junk"), ["resume_junk/checkpoints/last.pt", "readable"]),
    ("resume-network", _resume("resume_net"), ["resume_net/checkpoints/last.pt", "network"]),
    ("resume-missing", _resume("nowhere"), ["nowhere/checkpoints/last.pt", "no such"]),
    (
        "replay-truncated",
        _resume("replay_truncated"),
        ["replay_truncated/checkpoints/replay.npz", "delete it"],
    ),
    ("replay-shape", _resume("replay_shape"), ["replay_shape", "replay.npz", "frames"]),
    ("conflict-game", _resume("run", "--game", "Acrobot-v1"), ["--game Acrobot-v1", "CartPole"]),
    ("conflict-algo", _resume("run", "--algo", "bc"), ["--algo bc", "the run has iq"]),
    ("conflict-mode", _resume("run", "--mode", "online"), ["--mode online", "offline"]),
    ("conflict-net", _resume("run", "--hidden", "32"), ["--hidden 32", "64,64"]),
    ("conflict-demos", _resume("run", "--demos", "{d}/other_demos.npz"), ["other_demos.npz"]),
    ("expert-junk", _expert("CartPole", "{d}/junk.zip"), ["junk.zip", "not a stable-baselines3"]),
    ("expert-empty-zip", _expert("CartPole", "{d}/ppo-empty.zip"), ["ppo-empty.zip", "ppo"]),
    (
        "expert-other-game",
        _expert("Acrobot", str(EXPERTS / "ppo-CartPole-v1.zip")),
        ["ppo-CartPole-v1.zip", "2 actions", "Acrobot has 3"],
    ),
    ("grid-binary", _grid("binary"), ["grid_binary.toml", "UTF-8"]),
    ("grid-resources", _grid("resources"), ["grid_resources.toml", "resources", "table"]),
    ("grid-game", _grid("game"), ["grid_game.toml", "CartPol"]),
    ("grid-train-type", _grid("train_type"), ["grid_train_type.toml", "lr", "float", "fast"]),
    (
        "video-unwritable",
        [*RECORD, "--expert", "controller", "--out", "{d}/a_file/v.mp4"],
        ["a_file"],
    ),
]


@pytest.mark.parametrize("argv, words", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_bad_file_gives_one_error_line(files, argv, words):
    before = _snapshot(files)
    error = _one_error(_cli(*[a.replace("{d}", str(files)) for a in argv]))
    for word in words:
        assert word.replace("{d}", str(files)) in error, error
    assert _snapshot(files) == before, "an existing file was modified"
    assert not (files / "sweep").exists() and not (files / "new.npz").exists()


def test_expert_of_another_atari_game_is_refused(files):
    """Pong's RAM agent given as Breakout's expert: its features do not fit that game."""
    pong = EXPERTS / "ppo-ram-ALE-Pong-v5.zip"
    error = _one_error(_cli(*_expert("Breakout", str(pong)), "--out", str(files / "new.npz")))
    assert "ppo-ram-ALE-Pong-v5.zip" in error and "Breakout" in error, error


@pytest.mark.parametrize(
    "argv, kept, fsize",
    [
        # a demo file over an existing one (one CartPole episode: ~9 kB)
        (
            ["runners.demos", "--game", "CartPole", "--episodes", "1", "--out", "{w}/demos.npz"],
            "demos.npz",
            4_000,
        ),
        # a video over an existing one (~110 kB)
        ([*RECORD, "--expert", "controller", "--out", "{w}/video.mp4"], "video.mp4", 50_000),
        # the checkpoints of a resumed run (~75 kB; config.json and metrics.csv fit)
        ([*TRAIN, "--resume", "--run-dir", "{w}/run", "--steps", "4"], "run/checkpoints", 50_000),
        # the replay buffer of a resumed online run (written before last.pt; ~90 kB)
        (
            [*TRAIN, "--resume", "--run-dir", "{w}/online", "--steps", "4"],
            "online/checkpoints",
            50_000,
        ),
    ],  # fmt: skip
    ids=["demos", "video", "checkpoint", "replay"],
)
def test_full_disk_keeps_the_previous_file(files, tmp_path, argv, kept, fsize):
    """With `ulimit -f` below the file's size, the write fails with one line naming the file,
    and the file already there (a previous run's) is unchanged."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(files / "demos.npz", work / "demos.npz")
    shutil.copytree(files / "run", work / "run")
    shutil.copytree(files / "online", work / "online")
    (work / "video.mp4").write_bytes(b"an old video, kept")
    target = work / kept
    before = _snapshot(target) if target.is_dir() else {str(target): _snapshot(work)[str(target)]}
    result = _cli(*[a.replace("{w}", str(work)) for a in argv], fsize=fsize)
    error = _one_error(result, status=1)
    assert "File too large" in error and "previous file is unchanged" in error, error
    assert str(target) in error, error
    after = _snapshot(target) if target.is_dir() else _snapshot(work)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not list(work.rglob(".*.tmp")), "a temp file was left behind"


def test_results_file_that_cannot_be_written(files, tmp_path):
    """eval.json's place taken by a directory: one line naming it, the run's checkpoints kept."""
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    (run / "eval.json").unlink()
    (run / "eval.json").mkdir()
    result = _cli(*TRAIN, "--resume", "--run-dir", str(run), "--steps", "4")
    error = _one_error(result)
    assert f"{run / 'eval.json'}: not written" in error, error
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["loop"]["updates"] == 4


def test_second_process_on_a_run_is_refused_and_a_killed_run_leaves_no_lock(files, tmp_path):
    run = tmp_path / "run"
    argv = [*CLI, *TRAIN, "--demos", str(files / "demos.npz"), "--run-dir", str(run)]
    argv += ["--steps", "1000000", "--eval-interval", "20", "--eval-episodes", "1"]
    argv += ["--reward-check-episodes", "0"]
    last = run / "checkpoints" / "last.pt"
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not last.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert last.exists(), "the first run wrote no checkpoint"
        for second in (["--resume"], ["--demos", str(files / "demos.npz")]):
            error = _one_error(_cli(*TRAIN, "--run-dir", str(run), "--steps", "5", *second))
            assert f"{run}: in use by another training process (pid {first.pid})" in error
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        first.kill()
        first.wait()
    updates = torch.load(last, weights_only=True)["loop"]["updates"]
    result = _cli(*TRAIN, "--resume", "--run-dir", str(run), "--steps", str(updates + 2))
    assert result.returncode == 0, result.stderr


def test_debug_keeps_the_traceback(files):
    argv = [a.replace("{d}", str(files)) for a in _record_checkpoint("junk")]
    result = _cli(*argv, "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "junk.pt: not a readable checkpoint" in result.stderr
