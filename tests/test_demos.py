"""Demo files: round trip, stack rebuild, and one test per validation error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from iq_atari.demo_checks import FORMAT_VERSION
from iq_atari.demo_library import DEMO_DIR, TRAINING_SETS, find_demos
from iq_atari.demos import Trajectory, load_demos, save_demos
from iq_atari.envs import AtariSettings, make_env
from iq_atari.episodes import run_episode
from iq_atari.errors import DemoError, InputError
from iq_atari.experts import get_expert
from iq_atari.rollout import collect_episodes

SHORT_ATARI = AtariSettings(max_episode_frames=600)  # ~150 agent steps, then truncated


def _vector_trajectories(rng: np.random.Generator, lengths=(5, 3)) -> list[Trajectory]:
    return [
        Trajectory(
            obs=rng.normal(size=(n + 1, 4)).astype(np.float32),
            actions=rng.integers(0, 2, size=n),
            rewards=np.ones(n, dtype=np.float32),
            terminated=i == 0,
            truncated=i != 0,
        )
        for i, n in enumerate(lengths)
    ]


def _frame_trajectories(rng: np.random.Generator, lengths=(6, 4)) -> list[Trajectory]:
    return [
        Trajectory(
            obs=rng.integers(0, 256, size=(n + 1, 84, 84), dtype=np.uint8),
            actions=rng.integers(0, 6, size=n),
            rewards=rng.choice([-1.0, 0.0, 1.0], size=n).astype(np.float32),
            terminated=True,
            truncated=False,
        )
        for n in lengths
    ]


VECTOR_META = {"env_id": "CartPole-v1", "n_actions": 2, "expert": {"name": "test"}, "seed": 0}
FRAME_META = {
    "env_id": "ALE/Pong-v5",
    "n_actions": 6,
    "frame_stack": 4,
    "env_kwargs": AtariSettings().to_dict(),
    "expert": {"name": "test"},
    "seed": 0,
}


@pytest.fixture
def vector_file(tmp_path: Path) -> Path:
    return save_demos(
        tmp_path / "v.npz", _vector_trajectories(np.random.default_rng(0)), VECTOR_META
    )


@pytest.fixture
def frame_file(tmp_path: Path) -> Path:
    return save_demos(tmp_path / "f.npz", _frame_trajectories(np.random.default_rng(0)), FRAME_META)


def test_round_trip_vector(vector_file: Path) -> None:
    original = _vector_trajectories(np.random.default_rng(0))
    demos = load_demos(vector_file, env=make_env("CartPole"), game="cartpole")
    assert len(demos) == 2 and demos.frame_stack == 1
    for a, b in zip(original, demos.trajectories, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    np.testing.assert_array_equal(demos.returns, [5.0, 3.0])
    assert demos.meta["format_version"] == FORMAT_VERSION
    assert demos.meta["returns"] == [5.0, 3.0]
    assert demos.stacked_obs(0).shape == (6, 4)
    umask = os.umask(0)
    os.umask(umask)
    assert vector_file.stat().st_mode & 0o777 == 0o666 & ~umask  # shared data, not private


def test_npz_keys_and_dtypes(frame_file: Path) -> None:
    with np.load(frame_file) as npz:
        assert sorted(npz.files) == sorted(
            ["frames", "actions", "rewards", "terminated", "truncated", "episode_lengths", "meta"]
        )
        assert npz["frames"].shape == (7 + 5, 84, 84) and npz["frames"].dtype == np.uint8
        assert npz["actions"].dtype == np.int64 and npz["rewards"].dtype == np.float32
        assert npz["terminated"].dtype == bool
        np.testing.assert_array_equal(npz["episode_lengths"], [6, 4])
        meta = json.loads(str(npz["meta"]))
    for key in (
        "format_version",
        "env_id",
        "env_kwargs",
        "frame_stack",
        "n_actions",
        "action_meanings",
        "expert",
        "returns",
        "seed",
        "versions",
    ):
        assert key in meta


def test_stacks_rebuilt_equal_to_what_the_env_gave() -> None:
    """Record a Pong episode keeping every full stack the env returned; the file's rebuilt
    stacks must equal them at every step."""
    env = make_env("Pong", settings=SHORT_ATARI)
    seen: list[np.ndarray] = []

    class Spy(gym.Wrapper):
        def reset(self, **kw):
            obs, info = self.env.reset(**kw)
            seen.append(obs.copy())
            return obs, info

        def step(self, action):
            out = self.env.step(action)
            seen.append(out[0].copy())
            return out

    spy = Spy(env)
    rng = np.random.default_rng(1)
    episode = run_episode(spy, lambda obs: int(rng.integers(6)), seed=3)
    assert episode.trajectory.truncated and len(seen) == len(episode.trajectory) + 1
    from iq_atari.rollout import demo_meta

    meta = demo_meta("Pong", get_expert("Pong", "random"), 3, [3], SHORT_ATARI)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = save_demos(Path(tmp) / "p.npz", [episode.trajectory], meta)
        demos = load_demos(path, env=env, game="Pong", settings=SHORT_ATARI)
    stacks = demos.stacked_obs(0)
    assert stacks.shape == (len(seen), 4, 84, 84) and stacks.dtype == np.uint8
    np.testing.assert_array_equal(stacks, np.stack(seen))
    assert not stacks[0, :3].any() and stacks[0, 3].any()  # zero padding before the first frame


def test_collect_records_single_newest_frame() -> None:
    (traj,) = collect_episodes("Pong", get_expert("Pong", "random"), 1, 0, SHORT_ATARI, False)
    assert traj.obs.shape == (len(traj) + 1, 84, 84) and traj.obs.dtype == np.uint8


# ---- validation: each failure names the file and the field ------------------------------------


def _rewrite(path: Path, **changes) -> Path:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    out = path.with_name("bad.npz")
    np.savez(out, **arrays)
    return out


def _meta(path: Path, **changes) -> np.ndarray:
    with np.load(path) as npz:
        meta = json.loads(str(npz["meta"]))
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return np.array(json.dumps(meta))


FRAME_CASES = {
    "missing actions": (lambda p: {"actions": None}, "actions: missing"),
    "missing frames": (lambda p: {"frames": None}, "frames/obs"),
    "missing meta": (lambda p: {"meta": None}, "meta: missing"),
    "frames dtype": (
        lambda p: {"frames": np.zeros((12, 84, 84), np.float32)},
        "frames: expected uint8",
    ),
    "frames shape": (
        lambda p: {"frames": np.zeros((12, 84 * 84), np.uint8)},
        "frames: expected uint8",
    ),
    "frames length": (
        lambda p: {"frames": np.zeros((11, 84, 84), np.uint8)},
        "frames: expected 12 rows",
    ),
    "actions dtype": (lambda p: {"actions": np.zeros(10, np.float32)}, "actions: expected int64"),
    "actions length": (lambda p: {"actions": np.zeros(9, np.int64)}, "actions: expected 10"),
    "actions range": (
        lambda p: {"actions": np.full(10, 6, np.int64)},
        "actions: values must lie in [0, 6)",
    ),
    "negative action": (lambda p: {"actions": np.full(10, -1, np.int64)}, "actions: values"),
    "rewards NaN": (
        lambda p: {"rewards": np.full(10, np.nan, np.float32)},
        "rewards: contains NaN",
    ),
    "rewards length": (lambda p: {"rewards": np.zeros(11, np.float32)}, "rewards: expected 10"),
    "terminated dtype": (
        lambda p: {"terminated": np.zeros(2, np.int64)},
        "terminated: expected bool",
    ),
    "truncated length": (lambda p: {"truncated": np.zeros(3, bool)}, "truncated: expected 2"),
    "lengths dtype": (
        lambda p: {"episode_lengths": np.array([6.0, 4.0])},
        "episode_lengths: expected int64",
    ),
    "empty episode": (
        lambda p: {"episode_lengths": np.array([10, 0])},
        "episode_lengths: every episode",
    ),
    "meta not JSON": (lambda p: {"meta": np.array("{not json")}, "meta: not valid JSON"),
    "meta not object": (lambda p: {"meta": np.array("[1, 2]")}, "meta: expected a JSON object"),
    "meta not string": (lambda p: {"meta": np.zeros(3)}, "meta: expected a JSON string"),
    "meta field missing": (lambda p: {"meta": _meta(p, n_actions=None)}, "meta.n_actions: missing"),
    "format_version": (lambda p: {"meta": _meta(p, format_version=99)}, "meta.format_version"),
    "n_actions type": (lambda p: {"meta": _meta(p, n_actions="six")}, "meta.n_actions"),
    "meanings length": (
        lambda p: {"meta": _meta(p, action_meanings=["NOOP"])},
        "meta.action_meanings",
    ),
    "frame_stack": (lambda p: {"meta": _meta(p, frame_stack=0)}, "meta.frame_stack"),
    "returns length": (lambda p: {"meta": _meta(p, returns=[1.0])}, "meta.returns"),
    "returns values": (
        lambda p: {"meta": _meta(p, returns=[100.0, 0.0])},
        "meta.returns: do not match",
    ),
    "env_kwargs type": (lambda p: {"meta": _meta(p, env_kwargs=[])}, "meta.env_kwargs"),
}


@pytest.mark.parametrize("case", list(FRAME_CASES))
def test_validation_error(frame_file: Path, case: str) -> None:
    change, expected = FRAME_CASES[case]
    bad = _rewrite(frame_file, **change(frame_file))
    with pytest.raises(DemoError) as info:
        load_demos(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: "), message
    assert expected in message, message
    assert isinstance(info.value, InputError)


def test_vector_obs_nan_and_dtype(vector_file: Path) -> None:
    with np.load(vector_file) as npz:
        obs = npz["obs"].copy()
    obs[3, 1] = np.inf
    with pytest.raises(DemoError, match="obs: contains NaN or inf"):
        load_demos(_rewrite(vector_file, obs=obs))
    with pytest.raises(DemoError, match="obs: expected float32"):
        load_demos(_rewrite(vector_file, obs=obs.astype(np.float64)))
    with pytest.raises(DemoError, match="meta.frame_stack: vector observations need 1"):
        load_demos(_rewrite(vector_file, meta=_meta(vector_file, frame_stack=4)))


def test_refuses_pickled_arrays(vector_file: Path) -> None:
    bad = vector_file.with_name("obj.npz")
    with np.load(vector_file) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["actions"] = np.array([object()] * 8, dtype=object)
    np.savez(bad, **arrays)
    with pytest.raises(DemoError, match="not a plain numeric"):
        load_demos(bad)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="no such demo file"):
        load_demos(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DemoError, match="junk.npz: file: cannot read"):
        load_demos(junk)


class _FakeEnv(gym.Env):
    def __init__(self, n_actions: int, shape: tuple[int, ...], dtype=np.float32):
        self.action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.spaces.Box(0, 255, shape, dtype)


def test_env_mismatch(vector_file: Path, frame_file: Path) -> None:
    with pytest.raises(
        DemoError, match=r"meta.env_id: demos are for CartPole-v1, the env is Acrobot"
    ):
        load_demos(vector_file, env=make_env("Acrobot"))
    with pytest.raises(DemoError, match="meta.env_id: demos are for CartPole-v1, not ALE/Pong-v5"):
        load_demos(vector_file, game="pong")
    with pytest.raises(DemoError, match="meta.n_actions: demos have 2 actions, the env has 3"):
        load_demos(vector_file, env=_FakeEnv(3, (4,)))
    with pytest.raises(DemoError, match=r"obs: demo observations are \(4,\), the env gives \(6,\)"):
        load_demos(vector_file, env=_FakeEnv(2, (6,)))
    with pytest.raises(DemoError, match=r"meta.frame_stack: demo observations are \(4, 84, 84\)"):
        load_demos(frame_file, env=make_env("Pong", settings=AtariSettings(frame_stack=2)))
    with pytest.raises(DemoError, match="meta.env_kwargs.sticky_actions"):
        load_demos(frame_file, settings=AtariSettings(sticky_actions=0.0))
    assert len(load_demos(frame_file, env=make_env("Pong"), settings=AtariSettings())) == 2


def test_trajectory_validation() -> None:
    obs = np.zeros((4, 2), np.float32)
    with pytest.raises(DemoError, match="obs: expected T\\+1 = 4 rows"):
        Trajectory(obs[:3], np.zeros(3, np.int64), np.zeros(3), True, False)
    with pytest.raises(DemoError, match="rewards: expected 3"):
        Trajectory(obs, np.zeros(3, np.int64), np.zeros(2), True, False)
    with pytest.raises(DemoError, match="actions: expected a 1-D integer"):
        Trajectory(obs, np.zeros(3, np.float32), np.zeros(3), True, False)
    with pytest.raises(DemoError, match="obs: expected uint8 frames or float"):
        Trajectory(obs.astype(np.int32), np.zeros(3, np.int64), np.zeros(3), True, False)
    with pytest.raises(DemoError, match="contains NaN"):
        Trajectory(obs, np.zeros(3, np.int64), np.array([0, np.nan, 0]), True, False)
    with pytest.raises(DemoError, match="at least one step"):
        Trajectory(obs[:1], np.zeros(0, np.int64), np.zeros(0), True, False)
    t = Trajectory(obs, [0, 1, 1], [1, 2, 3], 1, 0)
    assert t.actions.dtype == np.int64 and t.rewards.dtype == np.float32 and t.terminated is True
    assert len(t) == 3 and t.ret == 6.0


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    trajs = _vector_trajectories(np.random.default_rng(0))
    with pytest.raises(DemoError, match="0 episodes"):
        save_demos(tmp_path / "x.npz", [], VECTOR_META)
    with pytest.raises(DemoError, match="meta: missing 'expert'"):
        save_demos(tmp_path / "x.npz", trajs, {"env_id": "CartPole-v1", "n_actions": 2})
    with pytest.raises(DemoError, match="actions: values must lie in"):
        save_demos(
            tmp_path / "x.npz", trajs, {**VECTOR_META, "n_actions": 1, "action_meanings": ["a0"]}
        )
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_find_demos_prefers_most_episodes(tmp_path: Path) -> None:
    assert find_demos("Pong", tmp_path) is None
    (tmp_path / "reference").mkdir()
    for name in (
        "Pong_planner_5ep.npz",
        "reference/Pong_planner_20ep.npz",
        "PongX_a_50ep.npz",
        "Breakout_tracker_99ep.npz",
    ):
        (tmp_path / name).touch()
    assert find_demos("ALE/Pong-v5", tmp_path) == tmp_path / "reference" / "Pong_planner_20ep.npz"
    (tmp_path / "Pong_random_20ep.npz").touch()  # a tie: the user's own set wins
    assert find_demos("pong", tmp_path) == tmp_path / "Pong_random_20ep.npz"


def test_find_demos_prefers_the_shipped_agents_set_among_reference_sets(tmp_path: Path) -> None:
    """Of Pong's shipped sets of 20 games, the one its shipped agent learned from wins."""
    (tmp_path / "reference").mkdir()
    for name in ("Pong_ppo-ram_20ep.npz", TRAINING_SETS["Pong"], "Pong_ppo-ram-v2_20ep.npz"):
        (tmp_path / "reference" / name).touch()
    assert find_demos("Pong", tmp_path) == tmp_path / "reference" / TRAINING_SETS["Pong"]
    (tmp_path / "reference" / "Pong_ppo-ram_50ep.npz").touch()  # more episodes still win
    assert find_demos("Pong", tmp_path) == tmp_path / "reference" / "Pong_ppo-ram_50ep.npz"
    (tmp_path / "Pong_mine_50ep.npz").touch()  # and so does the user's own set on a tie
    assert find_demos("Pong", tmp_path) == tmp_path / "Pong_mine_50ep.npz"


def test_the_shipped_agents_training_sets_ship() -> None:
    for game, name in TRAINING_SETS.items():
        assert (DEMO_DIR / "reference" / name).is_file(), (game, name)


def test_dart_noise_keeps_the_experts_actions_at_perturbed_states(tmp_path: Path) -> None:
    """DART demos: the env executes random actions now and then, the file keeps the expert's."""
    from iq_atari.rollout import record_demos

    path = record_demos(
        "CartPole", None, 2, seed=0, out=tmp_path / "d.npz", progress=False, dart=0.3
    )
    noisy = load_demos(path)
    assert noisy.meta["dart"]["probability"] == 0.3
    expert = get_expert("CartPole")
    for trajectory in noisy.trajectories:  # the controller reads the observation only
        labels = [expert.act(obs, None) for obs in trajectory.obs[:-1]]
        assert trajectory.actions.tolist() == labels
    clean = collect_episodes("CartPole", expert, 2, seed=0, progress=False)
    assert [t.ret for t in clean] == [500.0, 500.0]
    for a, b in zip(clean, noisy.trajectories, strict=True):  # same starts, then the noise acts
        assert np.array_equal(a.obs[0], b.obs[0])
        assert not np.allclose(a.obs[:50], b.obs[:50])
    with pytest.raises(DemoError, match="--dart: expected a probability in"):
        record_demos("CartPole", None, 1, seed=0, out=tmp_path / "e.npz", dart=1.0)


def test_dart_noise_from_the_experts_own_actions(tmp_path: Path, monkeypatch) -> None:
    """--dart-actions expert: the executed random actions are ones the expert takes itself (Pong's
    RAM expert: NOOP, up, down; never a FIRE variant); meta and file name say so."""
    import iq_atari.rollout as rollout
    from iq_atari.rollout import random_action_noise, record_demos

    perturb = random_action_noise(0.5, 6, np.random.default_rng(0), choices=[0, 2, 3])
    drawn = [perturb(9) for _ in range(400)]
    assert set(drawn) == {0, 2, 3, 9} and 150 < drawn.count(9) < 250

    executed: list[int] = []

    class Mover:  # always up; records what the env was told to execute
        name, provenance = "mover", {"kind": "test", "actions": [0, 2, 3]}

        def reset(self, env: gym.Env) -> None:
            pass

        def act(self, obs: np.ndarray, env: gym.Env) -> int:
            return 2

    real_run_episode = rollout.run_episode

    def spy(env, policy, seed, **kwargs):
        noise = kwargs["perturb"]
        kwargs["perturb"] = lambda a: executed.append(noise(a)) or executed[-1]
        return real_run_episode(env, policy, seed, **kwargs)

    monkeypatch.setattr(rollout, "get_expert", lambda game, name=None: Mover())
    monkeypatch.setattr(rollout, "run_episode", spy)
    settings = AtariSettings(max_episode_frames=2000)
    path = record_demos("Pong", None, 1, 0, tmp_path / "d.npz", progress=False,
                        settings=settings, dart=0.5, dart_actions="expert")  # fmt: skip
    assert set(executed) == {0, 2, 3}  # 500 steps, half of them drawn
    demo = load_demos(path, make_env("Pong"))
    assert demo.meta["dart"]["random_actions"] == [0, 2, 3]
    assert set(demo.trajectories[0].actions.tolist()) == {2}
    monkeypatch.setattr(rollout, "get_expert", lambda game, name=None: get_expert("Pong", "random"))
    with pytest.raises(DemoError, match="--dart-actions expert: the expert"):
        record_demos("Pong", None, 1, 0, tmp_path / "e.npz", dart=0.1, dart_actions="expert")


def test_noop_after_lost_life_waits_a_drawn_number_of_steps() -> None:
    """NOOP for the drawn 0..N steps at the start and after each lost life, the action else."""
    from iq_atari.rollout import noop_after_lost_life

    lives = [3]
    draws = np.random.default_rng(7)
    waits = [int(draws.integers(6)) for _ in range(2)]
    perturb = noop_after_lost_life(5, lambda: lives[0], np.random.default_rng(7))
    for wait in waits:
        assert [perturb(2) for _ in range(8)] == [0] * wait + [2] * (8 - wait)
        lives[0] -= 1  # a life lost: a new wait
    lives[0] += 1
    assert [perturb(2) for _ in range(3)] == [2, 2, 2]  # lives unchanged: no wait


def test_life_delay_demos_keep_the_experts_serve(tmp_path: Path, monkeypatch) -> None:
    """Breakout with --life-delay: more screens without a ball labelled with the expert's FIRE
    (the serve), while the env executed NOOP, than without; meta says so."""
    import iq_atari.rollout as rollout
    from iq_atari.rollout import record_demos

    class Server:  # FIRE with no ball in play (the serve), else a random move
        name, provenance = "server", {"kind": "test"}

        def __init__(self) -> None:
            self.rng = np.random.default_rng(0)

        def reset(self, env: gym.Env) -> None:
            pass

        def act(self, obs: np.ndarray, env: gym.Env) -> int:
            no_ball = int(env.unwrapped.ale.getRAM()[101]) == 0
            return 1 if no_ball else int(self.rng.choice([0, 2, 3]))

    monkeypatch.setattr(rollout, "get_expert", lambda game, name=None: Server())
    serves = []
    for delay in (0, 20):
        path = record_demos(
            "Breakout", None, 2, 3, out=tmp_path / f"{delay}.npz", progress=False, life_delay=delay
        )
        demo = load_demos(path, make_env("Breakout"))
        serves.append(sum(int(np.sum(t.actions == 1)) for t in demo.trajectories))
    assert demo.meta["life_delay"]["max_steps"] == 20
    assert serves[1] >= 2 * serves[0], serves
    with pytest.raises(DemoError, match="--life-delay: CartPole has no lives"):
        record_demos("CartPole", None, 1, seed=0, out=tmp_path / "c.npz", life_delay=3)
