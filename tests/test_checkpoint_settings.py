"""A checkpoint carries the env settings it trained with; `EXPERT=scripted` names the default."""

from __future__ import annotations

from pathlib import Path

import torch

from iq_atari.config import TrainConfig
from iq_atari.envs import AtariSettings
from iq_atari.experts import get_expert
from iq_atari.rollout import record_demos
from iq_atari.train import train
from runners.record import _checkpoint_settings


def test_scripted_means_the_games_default_expert() -> None:
    assert get_expert("Pong", "scripted").name == "planner"
    assert get_expert("Pong").name == "ppo-ram"
    assert get_expert("CartPole", "scripted").name == "controller"


def test_checkpoint_stores_env_settings_without_its_demo_file(tmp_path: Path) -> None:
    settings = AtariSettings(max_episode_frames=200, sticky_actions=0.0, noop_max=0)
    demos = record_demos(
        "Pong",
        "random",
        episodes=1,
        seed=0,
        out=tmp_path / "pong.npz",
        progress=False,
        settings=settings,
    )
    run = tmp_path / "run"
    train(
        TrainConfig(
            game="Pong",
            demos=str(demos),
            steps=1,
            batch_size=4,
            eval_interval=1,
            eval_episodes=1,
            run_dir=str(run),
            tensorboard=False,
            progress=False,
            reward_check_episodes=0,
        )
    )
    checkpoint = run / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["env_kwargs"] == settings.to_dict()
    demos.unlink()  # the settings must come from the checkpoint alone
    assert _checkpoint_settings(checkpoint, is_atari=True) == settings
