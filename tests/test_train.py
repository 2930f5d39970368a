"""The training loop: CartPole learning from one demo (offline and online), run directory,
checkpoints and exact resume, an Atari smoke run, the runner's CLI and demo recording."""

import csv
import json
import time

import numpy as np
import pytest
import torch

from iq_atari.config import TrainConfig, resolve_config
from iq_atari.envs import AtariSettings
from iq_atari.errors import InputError
from iq_atari.expert_data import demo_episodes
from iq_atari.learners import load_learner
from iq_atari.rollout import record_demos
from iq_atari.train import TrainingRun, lr_scale, train
from runners import train as train_runner

FAST = dict(progress=False, tensorboard=False, reward_check_episodes=0)


def _timed_train(config):
    start = time.perf_counter()
    record = train(config)
    return record, time.perf_counter() - start


def test_offline_iq_learns_cartpole_from_one_demo(cartpole_one_demo, tmp_path):
    config = TrainConfig(
        game="CartPole",
        demos=str(cartpole_one_demo),
        steps=3000,
        eval_interval=3000,
        seed=0,
        run_dir=str(tmp_path / "run"),
        **FAST,
    )
    record, seconds = _timed_train(config)
    print(f"offline CartPole, 1 demo, 3000 updates: {record['mean_return']:.1f} in {seconds:.1f}s")
    assert record["num_demos"] == 1 and record["episodes"] == 10
    assert record["mean_return"] >= 475
    assert record["env_steps"] == 0  # offline: the env is used for evaluation only


def test_online_iq_learns_cartpole_from_one_demo(cartpole_one_demo, tmp_path):
    config = TrainConfig(
        game="CartPole",
        mode="online",
        demos=str(cartpole_one_demo),
        steps=5000,
        eval_interval=5000,
        seed=0,
        run_dir=str(tmp_path / "run"),
        **FAST,
    )
    record, seconds = _timed_train(config)
    print(f"online CartPole, 1 demo, 5000 updates: {record['mean_return']:.1f} in {seconds:.1f}s")
    assert record["mean_return"] >= 475
    # One env step per update, after 1000 steps collected before learning.
    assert record["env_steps"] == 1000 + 5000


def _weights(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return state["learner"]["agent"]


def test_run_directory_checkpoints_and_exact_resume(cartpole_one_demo, tmp_path):
    common = dict(
        game="CartPole",
        demos=str(cartpole_one_demo),
        eval_interval=40,
        eval_episodes=2,
        log_interval=20,
        seed=3,
        progress=False,
        reward_check_episodes=0,
    )
    straight = tmp_path / "straight"
    train(TrainConfig(steps=120, run_dir=str(straight), tensorboard=False, **common))

    resumed = tmp_path / "resumed"
    first = train(TrainConfig(steps=80, run_dir=str(resumed), **common))
    assert first["updates"] == 80
    record = train(TrainConfig(steps=120, run_dir=str(resumed), resume=True, progress=False))
    assert record["updates"] == 120
    for key, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=0, atol=0)

    for name in (
        "config.json",
        "metrics.csv",
        "eval.json",
        "curve.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (resumed / name).is_file(), name
    assert list(resumed.glob("events.out.tfevents.*"))
    saved_config = json.loads((resumed / "config.json").read_text())
    assert saved_config["steps"] == 120 and saved_config["demos"] == str(cartpole_one_demo)
    eval_json = json.loads((resumed / "eval.json").read_text())
    for key in (
        "game",
        "algo",
        "mode",
        "mean_return",
        "std_return",
        "returns",
        "episodes",
        "updates",
        "env_steps",
        "wall_time_s",
    ):
        assert key in eval_json, key
    assert eval_json["game"] == "CartPole" and eval_json["algo"] == "iq"
    assert len(eval_json["returns"]) == eval_json["episodes"] == 2
    with open(resumed / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    evals = [int(r["step"]) for r in rows if r["tag"] == "eval/mean_return"]
    assert evals == [40, 80, 120]  # no duplicate from the resumed part
    assert {"train/softq_loss", "train/chi2_loss", "perf/updates_per_s"} <= {r["tag"] for r in rows}

    learner, config = load_learner(resumed)  # the best checkpoint
    assert config.game == "CartPole" and config.seed == 3
    assert load_learner(resumed / "checkpoints" / "last.pt")[1].steps == 120
    assert learner.act(np.zeros((1, 4), np.float32), greedy=True).shape == (1,)


def test_learning_rate_decays_linearly_and_resumes_exactly(
    cartpole_one_demo, tmp_path, monkeypatch
):
    common = dict(
        game="CartPole",
        demos=str(cartpole_one_demo),
        steps=120,
        lr=3e-4,
        lr_decay_from=60,
        eval_interval=40,
        eval_episodes=1,
        log_interval=20,
        seed=4,
        **FAST,
    )
    config = resolve_config(TrainConfig(**common))
    assert [lr_scale(u, config) for u in (0, 59, 60, 90, 119)] == [1, 1, 1, 0.5, 1 / 60]
    straight = tmp_path / "straight"
    train(TrainConfig(run_dir=str(straight), **common))
    with open(straight / "metrics.csv") as f:
        lrs = {
            int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["tag"] == "train/lr"
        }
    # The rate the update logged at each step took: constant to 60, then linear towards 0.
    expected = {20: 60, 40: 60, 60: 60, 80: 41, 100: 21, 120: 1}
    assert lrs == pytest.approx({k: 3e-4 * v / 60 for k, v in expected.items()})
    saved = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    assert saved["learner"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(3e-4 / 60)

    # Stopped mid-decay (as Ctrl-C does, after update 101) and resumed, the run ends with the
    # same weights: the schedule follows the update count, not the process.
    def log_then_stop(run, metrics, tick):
        original_log(run, metrics, tick)
        if run.state.updates == 100:
            run.stop.requested = True

    original_log = TrainingRun._log_train
    monkeypatch.setattr(TrainingRun, "_log_train", log_then_stop)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(run_dir=str(resumed), **common))
    monkeypatch.setattr(TrainingRun, "_log_train", original_log)
    assert torch.load(resumed / "checkpoints" / "last.pt")["loop"]["updates"] == 101
    train(TrainConfig(run_dir=str(resumed), resume=True, progress=False))
    for key, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=0, atol=0)

    with pytest.raises(InputError, match="--lr-decay-from must be >= 0 and below --steps"):
        resolve_config(TrainConfig(steps=100, lr_decay_from=100))


def test_absorbing_value_is_trained_saved_and_loaded(cartpole_one_demo, tmp_path):
    run_dir = tmp_path / "run"
    config = TrainConfig(
        game="CartPole",
        mode="online",
        demos=str(cartpole_one_demo),
        absorbing=True,
        steps=60,
        learning_starts=100,  # the random steps before learning end episodes: terminations
        eval_interval=60,
        eval_episodes=1,
        run_dir=str(run_dir),
        **FAST,
    )
    train(config)
    learner, saved = load_learner(run_dir / "checkpoints" / "last.pt")
    assert saved.absorbing and learner.agent.v_absorb.item() != 0.0
    # Runs saved before the option existed load without it.
    plain, _ = load_learner(_without_absorbing(run_dir, tmp_path))
    assert plain.agent.v_absorb is None


def _without_absorbing(run_dir, tmp_path):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    del state["config"]["absorbing"]
    state["learner"]["agent"].pop("v_absorb")
    optimizer = state["learner"]["optimizer"]
    last = optimizer["param_groups"][0]["params"].pop()  # V_abs comes after the Q weights
    optimizer["state"].pop(last)
    path = tmp_path / "old.pt"
    torch.save(state, path)
    return path


def test_demo_draws_pick_seeded_subsets(cartpole_one_demo, tmp_path):
    assert demo_episodes(10, 3, None) == [0, 1, 2] and demo_episodes(4, None, None) == [0, 1, 2, 3]
    draws = {tuple(demo_episodes(30, 3, seed)) for seed in range(5)}
    assert len(draws) == 5  # different seeds, different subsets
    for subset in draws:
        assert len(set(subset)) == 3 and list(subset) == sorted(subset) and max(subset) < 30
    assert demo_episodes(30, 3, 7) == demo_episodes(30, 3, 7)
    assert demo_episodes(1, 1, 7) == [0]
    config = TrainConfig(
        game="CartPole",
        demos=str(cartpole_one_demo),
        demo_draw=3,
        steps=10,
        eval_interval=10,
        eval_episodes=1,
        run_dir=str(tmp_path / "run"),
        **FAST,
    )
    assert train(config)["demo_episodes"] == [0]  # recorded in eval.json


def test_atari_offline_and_online_smoke(tmp_path, monkeypatch):
    # A tiny Pong demo file: random play, episodes cut at 200 frames (50 agent steps).
    settings = AtariSettings(max_episode_frames=200)
    demos = record_demos(
        "Pong",
        "random",
        episodes=2,
        seed=0,
        out=tmp_path / "pong.npz",
        progress=False,
        settings=settings,
    )
    small = dict(
        game="Pong",
        demos=str(demos),
        batch_size=8,
        eval_interval=2,
        eval_episodes=2,
        log_interval=1,
        **FAST,
    )
    offline = train(
        TrainConfig(steps=3, encoder="fine", run_dir=str(tmp_path / "offline"), **small)
    )
    assert offline["updates"] == 3 and offline["episodes"] == 2
    learner, saved = load_learner(tmp_path / "offline")  # rebuilt with the encoder it trained
    assert saved.encoder == "fine" and learner.agent.q_net.encoder == "fine"
    online = train(
        TrainConfig(
            steps=3,
            mode="online",
            replay_size=64,
            learning_starts=20,
            n_envs=2,
            augment_shift=4,
            run_dir=str(tmp_path / "online"),
            **small,
        )
    )
    assert online["env_steps"] >= 20
    learner, _ = load_learner(tmp_path / "online")
    assert learner.act(np.zeros((2, 4, 84, 84), np.uint8), greedy=True).shape == (2,)
    # --augment-from: the first updates see the frames as recorded, the later ones shifted.
    import iq_atari.train as train_module

    shifted = []
    real_shift = train_module.shift_batch
    monkeypatch.setattr(
        train_module,
        "shift_batch",
        lambda b, pad, rng: shifted.append(pad) or real_shift(b, pad, rng),
    )
    late = TrainConfig(
        steps=3, augment_shift=4, augment_from=2, run_dir=str(tmp_path / "late"), **small
    )
    assert train(late)["updates"] == 3
    assert shifted == [4]  # update 3 only, its expert batch (offline: no agent batch)


def test_presets_and_bad_combinations():
    atari = resolve_config(TrainConfig(game="pong"))
    assert (atari.game, atari.batch_size, atari.lr, atari.alpha) == ("Pong", 64, 1e-4, 1e-3)
    assert (atari.value_term, atari.regularize_over) == ("value_expert", "expert")
    online = resolve_config(TrainConfig(game="CartPole-v1", mode="online", lr=1e-3))
    assert (online.value_term, online.regularize_over) == ("value_expert", "policy")
    assert online.lr == 1e-3
    # V(s') comes from the online net unless asked otherwise, in both modes.
    assert (online.next_v, online.tau, online.target_interval) == ("online", 1.0, 1000)
    assert not online.absorbing and not atari.absorbing  # opt-in (docs/RESULTS.md)
    with pytest.raises(InputError, match="offline only"):
        resolve_config(TrainConfig(algo="bc", mode="online"))
    with pytest.raises(InputError, match="online"):
        resolve_config(TrainConfig(grad_penalty=10.0))
    with pytest.raises(InputError, match="--absorbing"):
        resolve_config(TrainConfig(algo="bc", absorbing=True))
    with pytest.raises(InputError, match="run-dir"):
        resolve_config(TrainConfig(resume=True))
    with pytest.raises(InputError, match="--augment-shift.*vector observations"):
        resolve_config(TrainConfig(game="CartPole", augment_shift=4))
    with pytest.raises(InputError, match="--augment-shift must be >= 0"):
        resolve_config(TrainConfig(game="Pong", augment_shift=-1))
    with pytest.raises(InputError, match="--augment-from needs --augment-shift"):
        resolve_config(TrainConfig(game="Pong", augment_from=10))
    with pytest.raises(InputError, match="--augment-from must be >= 0 and below --steps"):
        resolve_config(TrainConfig(game="Pong", augment_shift=4, augment_from=50_000))
    with pytest.raises(InputError, match="expected one of"):
        resolve_config(TrainConfig(divergence="tv"))


def test_missing_demos_are_recorded_first(monkeypatch, tmp_path, capsys, cartpole_one_demo):
    import iq_atari.demo_library
    import iq_atari.rollout

    calls = []

    def fake_record(game, expert, episodes, seed, **kwargs):
        calls.append((game, expert, episodes, seed))
        return cartpole_one_demo

    monkeypatch.setattr(iq_atari.demo_library, "find_demos", lambda game: None)
    monkeypatch.setattr(iq_atari.rollout, "record_demos", fake_record)
    code = train_runner.main(
        [
            "--game",
            "cartpole",
            "--steps",
            "2",
            "--eval-interval",
            "2",
            "--eval-episodes",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
            "--no-progress",
            "--no-tensorboard",
            "--reward-check-episodes",
            "0",
        ]
    )
    assert code == 0
    assert calls == [("CartPole", None, 10, 0)]  # classic preset: 10 episodes, default expert
    out = capsys.readouterr().out
    assert "recording 10 episodes" in out and "run directory" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert train_runner.main(["--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--run-dir" in err and err.count("\n") == 1
    assert train_runner.main(["--run-dir", str(tmp_path), "--resume"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_runner.main(["--value-term", "value_policy"])
    assert exit_info.value.code == 2


def test_refused_run_leaves_no_directory(tmp_path, capsys):
    bad = tmp_path / "nothing.npz"
    args = ["--game", "CartPole-v1", "--demos", str(bad), "--no-progress"]
    assert train_runner.main([*args, "--run-dir", str(tmp_path / "run")]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a directory the user made stays, lock file and all
    assert train_runner.main([*args, "--run-dir", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir()


def test_held_out_demos_are_checked_at_each_evaluation_and_bad_ones_named(
    cartpole_one_demo, tmp_path
):
    """--val-demos: the greedy policy's agreement with held-out expert games is logged at every
    evaluation and ends in eval.json; a file that is missing or of another game stops the run
    before anything is written, naming the flag."""
    held_out = record_demos("CartPole", None, episodes=2, seed=50, out=tmp_path / "held.npz")
    common = dict(game="CartPole", demos=str(cartpole_one_demo), eval_episodes=1, **FAST)
    config = TrainConfig(
        steps=1000,
        eval_interval=500,
        val_demos=str(held_out),
        run_dir=str(tmp_path / "r"),
        **common,
    )
    record = train(config)
    with open(tmp_path / "r" / "metrics.csv") as f:
        rows = [r for r in csv.reader(f) if r[1] == "eval/val_agreement"]
    assert [int(r[0]) for r in rows] == [500, 1000]
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    assert record["val_agreement"] == pytest.approx(float(rows[-1][2]))
    # An untrained policy picks the controller's action about half the time; 1000 updates on a
    # demo of the same controller must do clearly better on its unseen games.
    print("held-out agreement", [r[2] for r in rows])
    assert record["val_agreement"] > 0.75
    acrobot = record_demos("Acrobot", None, episodes=1, seed=0, out=tmp_path / "acrobot.npz")
    for bad, says in ((tmp_path / "gone.npz", "no such demo file"), (acrobot, "Acrobot")):
        run_dir = tmp_path / f"bad-{bad.stem}"
        bad_config = TrainConfig(steps=10, val_demos=str(bad), run_dir=str(run_dir), **common)
        with pytest.raises(InputError, match=f"--val-demos: .*{says}"):
            train(bad_config)
        assert not run_dir.exists()
