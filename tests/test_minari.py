"""Minari interchange: our demo files out to Minari and back unchanged (CartPole, Pong), datasets
made by Minari's own tools (DataCollector) or other code train us, bad datasets give one error."""

import json
import subprocess
import sys
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import pytest

minari = pytest.importorskip("minari")

from minari.data_collector.episode_buffer import EpisodeBuffer  # noqa: E402

from iq_atari.config import TrainConfig  # noqa: E402
from iq_atari.demo_sources import load_demo_source  # noqa: E402
from iq_atari.demos import load_demos  # noqa: E402
from iq_atari.envs import AtariSettings, make_env  # noqa: E402
from iq_atari.errors import DemoError  # noqa: E402
from iq_atari.experts.classic import cartpole_policy  # noqa: E402
from iq_atari.minari_import import META_KEY  # noqa: E402
from iq_atari.rollout import record_demos  # noqa: E402
from iq_atari.train import train  # noqa: E402
from runners import demos as demos_runner  # noqa: E402
from runners import train as train_runner  # noqa: E402

gym.register_envs(ale_py)
FAST = dict(progress=False, tensorboard=False, reward_check_episodes=0, threads=1)
TRAIN = ["--no-progress", "--no-tensorboard", "--threads", "1", "--steps", "2"]


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch) -> Path:
    """Every test reads and writes Minari datasets in its own folder, never ~/.minari."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _assert_same_demos(ours, back) -> None:
    assert len(ours) == len(back)
    for i, (a, b) in enumerate(zip(ours.trajectories, back.trajectories, strict=True)):
        assert a.obs.dtype == b.obs.dtype and np.array_equal(a.obs, b.obs)
        assert np.array_equal(ours.stacked_obs(i), back.stacked_obs(i))
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    assert ours.meta == back.meta


def _fresh_process_read(dataset_id: str) -> dict:
    """What plain `minari.load_dataset` sees in a new interpreter (no iq_atari imported)."""
    code = f"""
import json, minari
d = minari.load_dataset({dataset_id!r})
eps = list(d.iterate_episodes())
early = [bool(e.terminations[:-1].any() or e.truncations[:-1].any()) for e in eps]
print(json.dumps({{
    "episodes": len(eps), "steps": d.total_steps, "early": any(early),
    "obs_shape": list(eps[0].observations.shape), "obs_dtype": str(eps[0].observations.dtype),
    "space": list(d.observation_space.shape), "n": int(d.action_space.n),
    "env_id": d.env_spec.id, "returns": [float(e.rewards.sum()) for e in eps],
    "ends": [[bool(e.terminations[-1]), bool(e.truncations[-1])] for e in eps],
    "ours": sorted(d.storage.metadata["iq_atari"]["meta"]),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cartpole_file_to_minari_and_back(tmp_path, capsys):
    path = record_demos(
        "CartPole", None, episodes=3, seed=0, out=tmp_path / "c.npz", progress=False
    )
    argv = ["--game", "CartPole", "--demos", str(path), "--export-minari", "iq_atari/cp/ctl-v0"]
    assert demos_runner.main(argv) == 0
    ours = load_demos(path)
    back = load_demo_source("minari:iq_atari/cp/ctl-v0", game="CartPole")
    _assert_same_demos(ours, back)
    assert str(back.path) == "minari:iq_atari/cp/ctl-v0"

    seen = _fresh_process_read("iq_atari/cp/ctl-v0")
    assert seen["episodes"] == 3 and seen["steps"] == int(ours.lengths.sum())
    assert seen["obs_shape"] == [len(ours.trajectories[0].obs), 4] and seen["n"] == 2
    assert seen["env_id"] == "CartPole-v1" and seen["returns"] == list(ours.returns)
    assert seen["ends"] == [[t.terminated, t.truncated] for t in ours.trajectories]
    assert not seen["early"] and {"env_kwargs", "expert", "versions"} <= set(seen["ours"])
    dataset = minari.load_dataset("iq_atari/cp/ctl-v0")
    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(range(3))]
    assert seeds == ours.meta["episode_seeds"] == [0, 1, 2]

    # An id that exists is refused; the dataset stays as it was.
    capsys.readouterr()
    assert demos_runner.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iq_atari/cp/ctl-v0" in err[0] and "exists" in err[0]
    assert minari.load_dataset("iq_atari/cp/ctl-v0").total_episodes == 3


def test_pong_file_to_minari_and_back_keeps_single_frames(tmp_path):
    settings = AtariSettings(max_episode_frames=200)  # 2 short random episodes
    path = record_demos(
        "Pong", "random", 2, 0, out=tmp_path / "p.npz", progress=False, settings=settings
    )
    argv = ["--game", "Pong", "--demos", str(path), "--export-minari", "iq_atari/pong/rnd-v0"]
    assert demos_runner.main(argv) == 0
    ours = load_demos(path)
    back = load_demo_source("minari:iq_atari/pong/rnd-v0", game="Pong", settings=settings)
    _assert_same_demos(ours, back)

    seen = _fresh_process_read("iq_atari/pong/rnd-v0")
    assert seen["space"] == [84, 84] and seen["obs_dtype"] == "uint8"
    assert seen["obs_shape"] == [len(ours.trajectories[0].obs), 84, 84]
    assert seen["env_id"] == "ALE/Pong-v5" and seen["n"] == 6
    dataset = minari.load_dataset("iq_atari/pong/rnd-v0")
    assert dataset.storage.metadata["jpeg_encoding"] is False  # lossless frames
    assert dataset.storage.metadata[META_KEY]["frame_stack"] == 4
    # The recorded env spec re-makes the env whose observations the dataset holds.
    env = dataset.recover_environment()
    try:
        assert env.reset(seed=0)[0].shape == (84, 84)
        assert env.spec.kwargs["max_num_frames_per_episode"] == 200
    finally:
        env.close()


def test_parquet_export_is_compressed_and_exact(tmp_path, minari_root):
    pytest.importorskip("pyarrow")  # Minari's arrow / parquet storage
    settings = AtariSettings(max_episode_frames=200)
    path = record_demos(
        "Pong", "random", 2, 0, out=tmp_path / "p.npz", progress=False, settings=settings
    )
    for fmt in ("hdf5", "parquet"):
        argv = ["--game", "Pong", "--demos", str(path), "--export-minari", f"iq_atari/p/{fmt}-v0"]
        assert demos_runner.main([*argv, "--minari-format", fmt]) == 0
        _assert_same_demos(load_demos(path), load_demo_source(f"minari:iq_atari/p/{fmt}-v0"))
    assert minari.load_dataset("iq_atari/p/parquet-v0").storage.metadata["data_format"] == "parquet"
    size = {fmt: sum(f.stat().st_size for f in (minari_root / "iq_atari" / "p" / f"{fmt}-v0")
                     .rglob("*") if f.is_file()) for fmt in ("hdf5", "parquet")}  # fmt: skip
    assert size["parquet"] < size["hdf5"] / 5


def _write_dataset(dataset_id, episodes, env=None, **spaces) -> None:
    """A dataset written the way other code would, from buffers (no iq_atari metadata)."""
    buffers = [
        EpisodeBuffer(
            observations=np.asarray(obs),
            actions=np.asarray(actions),
            rewards=np.asarray(rewards, dtype=np.float64),
            terminations=np.asarray(term),
            truncations=np.asarray(trunc),
        )
        for obs, actions, rewards, term, trunc in episodes
    ]
    with pytest.warns(UserWarning):  # Minari asks for an author etc.
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env, **spaces)


def _play(env, steps, rng, seed=0):
    """obs (T+1), actions, rewards, terminations, truncations of one random episode of <= steps."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    for t in range(steps):
        action = int(rng.integers(env.action_space.n))
        obs, reward, term, trunc, _ = env.step(action)
        trunc = trunc or (t == steps - 1 and not term)
        observations.append(obs), actions.append(action), rewards.append(reward)
        terms.append(term), truncs.append(trunc)
        if term or trunc:
            break
    return observations, actions, rewards, terms, truncs


def test_other_codes_atari_stacks_are_read_as_frames(tmp_path):
    # Someone recorded our own Pong env's (4, 84, 84) zero-padded stacks as they came.
    rng = np.random.default_rng(0)
    env = make_env("Pong")
    episodes = [_play(env, 12, rng, seed) for seed in (0, 1)]
    _write_dataset("other/pong/stacks-v0", episodes, env=env, jpeg_encoding=False)
    env.close()
    back = load_demo_source("minari:other/pong/stacks-v0", game="Pong")
    assert back.frame_stack == 4 and back.meta["env_kwargs"] == AtariSettings().to_dict()
    for i, (obs, actions, *_rest) in enumerate(episodes):
        assert back.trajectories[i].obs.shape == (len(obs), 84, 84)
        assert np.array_equal(back.stacked_obs(i), np.asarray(obs))
        assert np.array_equal(back.trajectories[i].actions, actions)
    record = train(
        TrainConfig(
            game="Pong",
            demos="minari:other/pong/stacks-v0",
            algo="bc",
            steps=2,
            batch_size=8,
            eval_interval=2,
            eval_episodes=1,
            run_dir=str(tmp_path / "bc"),
            **FAST,
        )
    )
    assert record["updates"] == 2
    saved = json.loads((tmp_path / "bc" / "config.json").read_text())
    assert saved["demos"] == "minari:other/pong/stacks-v0"  # what a resume reads again

    # gymnasium's default FrameStackObservation repeats the first frame; its stacks still hold
    # consecutive frames, and are rebuilt with our zero padding.
    env = gym.wrappers.FrameStackObservation(gym.wrappers.AtariPreprocessing(
        gym.make("ALE/Pong-v5", frameskip=1)), 4)  # fmt: skip
    episode = _play(env, 8, rng)
    _write_dataset("other/pong/reset-pad-v0", [episode], env=env, jpeg_encoding=False)
    env.close()
    back = load_demo_source("minari:other/pong/reset-pad-v0", game="Pong")
    assert np.array_equal(back.stacked_obs(0)[3:], np.asarray(episode[0])[3:])
    assert back.meta["env_kwargs"]["frame_skip"] == 4 and back.meta["frame_stack"] == 4

    # Stacks that are not consecutive frames are refused.
    broken = np.array(episode[0])
    broken[5, 0] = 255  # the oldest frame of step 5 is no longer the newest of step 2
    _write_dataset("other/pong/bad-stack-v0", [(broken, *episode[1:])], env=env,
                   jpeg_encoding=False)  # fmt: skip
    with pytest.raises(DemoError, match="consecutive frames"):
        load_demo_source("minari:other/pong/bad-stack-v0", game="Pong")


def _collect_cartpole(dataset_id: str, episodes: int, first_seed: int, policy=None) -> None:
    """Record CartPole with Minari's own DataCollector around a plain gymnasium env."""
    pytest.importorskip("jax")  # DataCollector needs minari[create]
    env = minari.DataCollector(gym.make("CartPole-v1"))
    rng = np.random.default_rng(first_seed)
    for episode in range(episodes):
        obs, _ = env.reset(seed=first_seed + episode)
        done = False
        while not done:
            action = policy(obs) if policy else int(rng.integers(2))
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    with pytest.warns(UserWarning):
        env.create_dataset(dataset_id, algorithm_name="scripted controller", author="a person")
    env.close()


def test_datacollector_dataset_trains_cartpole_like_our_demos(tmp_path):
    _collect_cartpole("others/cartpole/controller-v0", 10, 100, policy=cartpole_policy)
    ours = record_demos("CartPole", None, 10, 100, out=tmp_path / "c.npz", progress=False)
    theirs = load_demo_source("minari:others/cartpole/controller-v0", game="CartPole")
    # The same controller from the same seeds: the same transitions, read from either format.
    for a, b in zip(load_demos(ours).trajectories, theirs.trajectories, strict=True):
        assert np.array_equal(a.obs, b.obs) and np.array_equal(a.actions, b.actions)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    assert theirs.meta["expert"]["name"] == "scripted controller"
    assert theirs.meta["episode_seeds"] == list(range(100, 110))

    common = dict(game="CartPole", steps=3000, eval_interval=3000, seed=0, **FAST)
    minari_run = train(TrainConfig(demos="minari:others/cartpole/controller-v0",
                                   run_dir=str(tmp_path / "m"), **common))  # fmt: skip
    file_run = train(TrainConfig(demos=str(ours), run_dir=str(tmp_path / "f"), **common))
    print(f"offline IQ, 10 DataCollector demos, 3000 updates: {minari_run['mean_return']}")
    assert minari_run["episodes"] == 10 and minari_run["mean_return"] >= 475
    assert minari_run["mean_return"] == file_run["mean_return"]


def test_datacollector_random_dataset_trains_bc_and_online_iq(tmp_path):
    _collect_cartpole("others/cartpole/random-v0", 3, 0)
    demos = load_demo_source("minari:others/cartpole/random-v0", game="CartPole")
    assert len(demos) == 3 and all(t.terminated for t in demos.trajectories)
    small = dict(game="CartPole", demos="minari:others/cartpole/random-v0", batch_size=16,
                 eval_interval=5, eval_episodes=1, steps=5, **FAST)  # fmt: skip
    assert train(TrainConfig(algo="bc", run_dir=str(tmp_path / "bc"), **small))["updates"] == 5
    online = train(TrainConfig(mode="online", learning_starts=20, run_dir=str(tmp_path / "on"),
                               **small))  # fmt: skip
    assert online["updates"] == 5 and online["env_steps"] >= 20


def _one_error(argv, capsys) -> str:
    capsys.readouterr()
    assert train_runner.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_bad_datasets_give_one_error(tmp_path, capsys, minari_root):
    rng = np.random.default_rng(0)
    acrobot = gym.make("Acrobot-v1")
    _write_dataset("bad/acrobot-v0", [_play(acrobot, 5, rng)], env=acrobot)
    pendulum = gym.make("Pendulum-v1")
    obs, _ = pendulum.reset(seed=0)
    _write_dataset("bad/pendulum-v0", [([obs] * 3, np.zeros((2, 1), np.float32), [0.0, 0.0],
                   [False, False], [False, True])], env=pendulum)  # fmt: skip
    cartpole = gym.make("CartPole-v1")
    _write_dataset("bad/empty-v0", [], env=cartpole)
    _write_dataset("bad/missing-v0", [_play(cartpole, 5, rng, s) for s in (0, 1)], env=cartpole)
    meta_file = minari_root / "bad" / "missing-v0" / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "total_episodes": 3}))
    space = dict(observation_space=cartpole.observation_space, action_space=cartpole.action_space)
    _write_dataset("bad/no-env-v0", [_play(cartpole, 5, rng)], **space)
    ale = gym.make("ALE/Pong-v5")
    _write_dataset("bad/rgb-v0", [_play(ale, 3, rng)], env=ale, jpeg_encoding=False)

    run = ["--run-dir", str(tmp_path / "run"), *TRAIN]
    cases = [
        ("bad/acrobot-v0", "CartPole", ["env_id", "Acrobot-v1", "CartPole-v1"]),
        ("bad/pendulum-v0", "CartPole", ["action_space", "Discrete"]),
        ("bad/empty-v0", "CartPole", ["no episodes"]),
        ("bad/missing-v0", "CartPole", ["episode", "3 episodes"]),
        ("bad/no-env-v0", "CartPole", ["env_spec"]),
        ("bad/rgb-v0", "Pong", ["(210, 160, 3)", "AtariPreprocessing"]),
        ("bad/nothing-here-v0", "CartPole", ["no local Minari dataset", str(minari_root)]),
        ("not an id", "CartPole", ["not a Minari dataset id"]),
    ]
    for dataset_id, game, words in cases:
        line = _one_error([*run, "--game", game, "--demos", f"minari:{dataset_id}"], capsys)
        assert f"minari:{dataset_id}" in line and all(w in line for w in words), line

    # The real CLI in a fresh process: exit 2, one line, no traceback.
    out = subprocess.run(
        [sys.executable, "-m", "runners.train", *run, "--game", "CartPole", "--demos",
         "minari:bad/acrobot-v0"], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "minari:bad/acrobot-v0" in out.stderr and "Traceback" not in out.stderr


def test_without_minari_installed_the_error_says_how(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` now fails
    line = _one_error(["--game", "CartPole", "--demos", "minari:nobody/b-v0", *TRAIN], capsys)
    assert "minari:nobody/b-v0" in line and "pip install" in line
    capsys.readouterr()
    path = record_demos("CartPole", None, 1, 0, out=tmp_path / "c.npz", progress=False)
    argv = ["--game", "CartPole", "--demos", str(path), "--export-minari", "nobody/b-v0"]
    assert demos_runner.main(argv) == 2
    assert "pip install" in capsys.readouterr().err
