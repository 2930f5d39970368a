"""RAM-feature experts: the extractors on known RAM, the feature env's dynamics against our pixel
env, and `runners.expert` -> save -> load -> identical actions -> pixel demos, end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iq_atari.envs import AtariSettings, make_env
from iq_atari.experts.ram import (
    BreakoutFeatures,
    PongFeatures,
    RamFeatureEnv,
    SpaceInvadersFeatures,
    _reflect,
)

pytest.importorskip("stable_baselines3")


def _pong_ram(ball_x: int, ball_y: int, player: int, opponent: int) -> np.ndarray:
    ram = np.zeros(128, dtype=np.uint8)
    ram[49], ram[54], ram[51], ram[50] = ball_x, ball_y, player, opponent
    return ram


def test_reflect_folds_positions_into_the_field():
    assert _reflect(50.0, 40.0, 100.0) == 50.0
    assert _reflect(110.0, 40.0, 100.0) == 90.0  # 10 past the top wall -> 10 back
    assert _reflect(30.0, 40.0, 100.0) == 50.0
    assert _reflect(170.0, 40.0, 100.0) == 50.0  # two bounces


def test_pong_features_on_known_positions():
    features = PongFeatures()
    first = features(_pong_ram(100, 120, 150, 90))
    assert first[0] == 1.0  # ball in play
    assert first[1] == pytest.approx(100 / 205)
    assert first[3] == 0.0 and first[4] == 0.0  # no velocity on the first step
    assert first[5] == pytest.approx(158 / 210)  # paddle centre = ram[51] + 8
    # Ball moved +8 in x and +4 in y: arrival after (188 - 108) / 8 = 10 steps at y 124 + 40.
    second = features(_pong_ram(108, 124, 150, 90))
    assert second[3] == pytest.approx(0.8) and second[4] == pytest.approx(0.4)
    assert second[8] == 1.0  # moving toward the player
    assert second[9] * 210 == pytest.approx(164 + 2)
    assert second[10] * 50 == pytest.approx(166 - 158)
    assert second[13] == pytest.approx(10 / 20)  # agent steps to contact, scaled
    assert second[14] == pytest.approx((166 - 158) / 16)  # offset at paddle scale
    assert second[15] == pytest.approx((166 - 98) / 50)  # arrival vs the opponent's centre
    # A bounce: from y 200 moving +4 per step for 10 steps reaches 240 -> folded to 174.
    features.reset()
    features(_pong_ram(100, 196, 150, 90))
    bounced = features(_pong_ram(108, 200, 150, 90))
    assert bounced[9] * 210 == pytest.approx(2 * 207 - 240 + 2)
    no_ball = features(_pong_ram(0, 0, 150, 90))
    assert no_ball[0] == 0.0 and no_ball[3] == 0.0
    assert no_ball[13] == 1.0 and no_ball[14] == 0.0  # nothing coming


def test_breakout_and_space_invaders_features_on_known_positions():
    ram = np.zeros(128, dtype=np.uint8)
    ram[72], ram[99], ram[101], ram[57] = 100, 120, 100, 5
    breakout = BreakoutFeatures()
    breakout(ram)
    ram[99], ram[101] = 124, 110  # falling: +4 x, +10 y per step, 7 steps to the paddle row
    out = breakout(ram)
    paddle = 100 - 47 + 8
    landing = 124 + 4 * 7 - 49 + 1
    assert out[9] * 40 == pytest.approx(landing - paddle)
    assert out[11] == pytest.approx(1.0)
    ram = np.zeros(128, dtype=np.uint8)
    ram[28], ram[26], ram[18] = 60, 40, 0b000101  # aliens in columns 0 and 2 of row 0
    invaders = SpaceInvadersFeatures()
    out = invaders(ram)
    assert out.shape == (invaders.size,)
    bits = out[13 : 13 + 36].reshape(6, 6)
    assert bits[0].tolist() == [1, 0, 1, 0, 0, 0] and bits[1:].sum() == 0
    assert out[12] * 128 == pytest.approx(40 + 32 - 60)  # nearest occupied column: 2


@pytest.mark.parametrize("game", ["Pong", "Breakout", "SpaceInvaders"])
def test_feature_env_plays_the_pixel_envs_game(game):
    """Same seed, same actions: RamFeatureEnv and make_env go through identical RAM states."""
    ram_env = RamFeatureEnv(game)
    pixel_env = make_env(game)
    rng = np.random.default_rng(0)
    actions = ram_env.extractor.actions
    for seed in (3, 4):
        ram_env.reset(seed=seed)
        pixel_env.reset(seed=seed)
        for _ in range(300):
            a = int(rng.integers(len(actions)))
            _, r1, t1, u1, _ = ram_env.step(a)
            _, r2, t2, u2, _ = pixel_env.step(actions[a])
            assert np.array_equal(ram_env._env.ale.getRAM(), pixel_env.unwrapped.ale.getRAM())
            assert (r1, t1, u1) == (r2, t2, u2)
            if t1 or u1:
                break
    ram_env.close()
    pixel_env.close()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=600
    )


def test_make_expert_resume_load_and_record_pixel_demos(tmp_path: Path):
    from iq_atari.demos import load_demos
    from iq_atari.experts import get_expert
    from iq_atari.experts.ram_expert import RamPolicyExpert, load_ram_expert

    out = tmp_path / "ppo-ram-ALE-Pong-v5.zip"
    base = ["runners.expert", "--game", "Pong", "--out", str(out), "--no-progress"]
    base += ["--eval-episodes", "1"]
    done = _cli(*base, "--steps", "1024", "--log-dir", str(tmp_path / "tb"))
    assert done.returncode == 0, done.stderr
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["steps"] == 1024 and len(info["returns"]) == 1
    assert "RAM features" in info["observes"]
    assert out.with_name(out.stem + ".ckpt.zip").is_file()
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))

    resumed = _cli(*base, "--steps", "2048", "--resume", "--log-dir", str(tmp_path / "tb2"))
    assert resumed.returncode == 0, resumed.stderr
    assert any((tmp_path / "tb2").rglob("events.out.tfevents.*"))  # not the first run's dir
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 2048

    # save -> load -> identical actions, and the path loads as a RAM expert by name.
    first, second = load_ram_expert(out, "Pong"), get_expert("Pong", str(out))
    assert isinstance(second, RamPolicyExpert)
    env = make_env("Pong", seed=0)
    obs, _ = env.reset(seed=0)
    first.reset(env)
    second.reset(env)
    for _ in range(200):
        a = first.act(obs, env)
        assert a == second.act(obs, env)
        assert a in (0, 2, 3)
        obs, *_ = env.step(a)
    env.close()

    demos = tmp_path / "Pong_ram_1ep.npz"
    recorded = _cli("runners.demos", "--game", "Pong", "--expert", str(out), "--episodes", "1",
                    "--no-progress", "--out", str(demos))  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    demo_set = load_demos(demos, make_env("Pong"))
    assert demo_set.meta["expert"]["observes"].startswith("RAM features")
    assert demo_set.meta["expert"]["score"]["steps"] == 2048
    assert demo_set.stacked_obs(0).shape[1:] == (4, 84, 84)


def test_a_corrupt_expert_file_is_one_error_line(tmp_path: Path):
    bad = tmp_path / "ppo-ram-ALE-Pong-v5.zip"
    bad.write_bytes(b"not a zip")
    done = _cli("runners.demos", "--game", "Pong", "--expert", str(bad), "--episodes", "1",
                "--no-progress", "--out", str(tmp_path / "d.npz"))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0]
    assert "Traceback" not in done.stderr


def test_space_invaders_trains_on_clipped_rewards_but_reports_points():
    """The learner sees sign(reward); the Monitor's episode record keeps the game's points."""
    from iq_atari.experts.ram_expert import _vec_env, ram_ppo_config

    assert ram_ppo_config("SpaceInvaders").clip_reward
    assert not ram_ppo_config("Pong").clip_reward and not ram_ppo_config("Breakout").clip_reward
    env = _vec_env("SpaceInvaders", 1, 0, AtariSettings(max_episode_frames=4000), False, True)
    env.reset()
    rng = np.random.default_rng(0)
    seen, episode = [], None
    while episode is None:
        _, rewards, _, infos = env.step(rng.integers(0, 6, size=1))
        seen.append(float(rewards[0]))
        episode = infos[0].get("episode")
    env.close()
    assert set(seen) <= {-1.0, 0.0, 1.0} and sum(seen) > 0
    assert episode["r"] > sum(seen)  # an alien is worth 5..30 points, not 1


def test_breakout_records_idle_fire_as_noop_and_plays_the_same_game():
    """FIRE with a ball in play above the paddle changes nothing in the emulator, so the RAM
    expert records it as NOOP; FIRE to serve stays FIRE. Lockstep: pressing FIRE in one copy
    and NOOP in the other at every such step gives identical frames and RAM."""
    features = BreakoutFeatures()
    ram = np.zeros(128, dtype=np.uint8)
    for y, expected in ((0, 1), (120, 0), (199, 0), (200, 1), (215, 1)):
        ram[101] = y
        assert features.canonical_action(1, ram) == expected
        assert features.canonical_action(2, ram) == 2

    fire, noop = make_env("Breakout", seed=0), make_env("Breakout", seed=0)
    fire.reset(seed=0)
    noop.reset(seed=0)
    rng = np.random.default_rng(0)
    relabelled = 0
    for _ in range(600):
        ram = fire.unwrapped.ale.getRAM()
        action = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.5, 0.15, 0.15]))
        recorded = features.canonical_action(action, ram)
        relabelled += recorded != action
        fire_obs, *fire_end = fire.step(action)
        noop_obs, *noop_end = noop.step(recorded)
        assert np.array_equal(fire_obs, noop_obs)
        assert np.array_equal(fire.unwrapped.ale.getRAM(), noop.unwrapped.ale.getRAM())
        assert fire_end[:3] == noop_end[:3]
        if fire_end[1] or fire_end[2]:
            break
    assert relabelled > 50
    fire.close()
    noop.close()


def test_action_noise_executes_random_actions_reproducibly():
    """The wrapper replaces about p of the actions, the same ones for the same seed; p = 0 never."""
    from iq_atari.experts.ram_expert import RandomActions

    class Record(RamFeatureEnv):
        def step(self, action):
            self.executed.append(int(action))
            return super().step(action)

    def executed(p: float, seed: int) -> list[int]:
        env = Record("Pong", AtariSettings(max_episode_frames=2000))
        env.executed = []
        noisy = RandomActions(env, p)
        noisy.reset(seed=seed)
        for _ in range(400):
            noisy.step(0)
        noisy.close()
        return env.executed

    assert executed(0.0, 0) == [0] * 400
    first = executed(0.3, 0)
    changed = sum(a != 0 for a in first) / len(first)
    assert 0.1 < changed < 0.3  # 0.3 x 2/3 of the draws land on another action
    assert executed(0.3, 0) == first and executed(0.3, 1) != first


def test_make_expert_rejects_a_bad_action_noise(tmp_path: Path):
    done = _cli("runners.expert", "--game", "Pong", "--steps", "256", "--action-noise", "1.5",
                "--out", str(tmp_path / "e.zip"), "--no-progress")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--action-noise" in lines[0] and "Traceback" not in done.stderr


def test_restart_lr_replaces_the_schedule_of_a_resumed_run(tmp_path: Path):
    from iq_atari.errors import InputError
    from iq_atari.experts.ram_expert import train_ram_expert

    out = tmp_path / "e.zip"
    kwargs = dict(progress=False, log_dir=None, checkpoint_every=10**9)
    with pytest.raises(InputError, match="--restart-lr"):
        train_ram_expert("Pong", 1024, 0, out, restart_lr=1e-3, **kwargs)
    first, _ = train_ram_expert("Pong", 1024, 0, out, **kwargs)
    assert first.lr_schedule(0.5) == pytest.approx(0.5 * 5e-4)  # the default: 5e-4 linear to 0
    again, _ = train_ram_expert("Pong", 4096, 0, out, resume=True, restart_lr=1e-3, **kwargs)
    # The steps left (3072 of 4096) start at 1e-3 and end at 0.
    assert again.lr_schedule(0.75) == pytest.approx(1e-3)
    assert again.lr_schedule(0.0) == 0.0 and again.num_timesteps == 4096
