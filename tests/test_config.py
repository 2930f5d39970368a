"""TrainConfig as the one declaration of every training option: presets in --help, the loss and
learner options built from it by field name, and runner configs that reuse its fields."""

import dataclasses

from iq_atari.bc import BCConfig
from iq_atari.config import (
    GAME_PRESETS,
    MODE_DEFAULTS,
    PRESETS,
    TrainConfig,
    loss_config,
    options_from,
    resolve_config,
)
from iq_atari.iq import IQLossConfig
from iq_atari.iq_learner import IQLearnerConfig
from runners import compare
from runners.common import build_parser


def test_help_shows_the_presets_of_each_family():
    text = " ".join(build_parser(TrainConfig, "").format_help().split())
    assert "gradient updates (default: Atari 50000, classic 10000)" in text
    assert "Adam learning rate (default: Atari 1e-4, classic 3e-4, BC on Atari 1e-3)" in text
    assert "(default: offline expert, online policy)" in text
    assert "(default: None)" not in text.split("--steps")[1].split("--seed")[0]
    for name in [*PRESETS["atari"], *MODE_DEFAULTS["offline"]]:
        shown = TrainConfig.__dataclass_fields__[name].metadata["help"]
        assert "(default: Atari " in shown or "(default: offline " in shown, name


def test_a_game_preset_overrides_its_family_and_yields_to_flags(monkeypatch):
    import iq_atari.config as config_module

    monkeypatch.setattr(config_module, "bf16_is_fast", lambda device: True)
    pong = resolve_config(TrainConfig(game="ALE/Pong-v5", device="cpu"))
    assert (pong.encoder, pong.lr_decay_from, pong.bf16) == ("fine", 25_000, True)
    assert GAME_PRESETS["Pong"]["encoder"] == "fine"
    breakout = resolve_config(TrainConfig(game="Breakout", device="cpu"))
    assert (breakout.encoder, breakout.lr_decay_from, breakout.bf16) == ("nature", 0, False)
    given = resolve_config(TrainConfig(game="Pong", encoder="nature", bf16=False, lr_decay_from=0))
    assert (given.encoder, given.lr_decay_from, given.bf16) == ("nature", 0, False)
    # The preset's decay start past a shorter run means a constant rate, not an error.
    assert resolve_config(TrainConfig(game="Pong", steps=20_000)).lr_decay_from == 0
    # Without bf16 instructions the preset's bf16 stays off; an explicit --bf16 is kept.
    monkeypatch.setattr(config_module, "bf16_is_fast", lambda device: False)
    assert not resolve_config(TrainConfig(game="Pong", device="cpu")).bf16
    assert resolve_config(TrainConfig(game="Pong", device="cpu", bf16=True)).bf16
    text = " ".join(build_parser(TrainConfig, "").format_help().split())
    assert "(default: Atari nature, classic nature, Pong fine)" in text


def test_loss_and_learner_options_come_from_train_config_by_name():
    config = resolve_config(
        TrainConfig(
            mode="online",
            gamma=0.9,
            divergence="kl",
            chi2_alpha=0.3,
            lr=3e-5,
            next_v="target",
            tau=0.5,
            target_interval=7,
            grad_penalty=2.0,
        )
    )
    loss = loss_config(config)
    assert loss == IQLossConfig(0.9, "value_expert", "kl", 0.3, "policy")
    learner = options_from(IQLearnerConfig, config, loss=loss)
    assert (learner.lr, learner.next_v, learner.tau, learner.target_interval) == (
        3e-5,
        "target",
        0.5,
        7,
    )
    assert learner.grad_penalty == 2.0 and learner.target_entropy == IQLearnerConfig.target_entropy
    assert options_from(BCConfig, config, val_interval=5) == BCConfig(lr=3e-5, val_interval=5)


def test_compare_reuses_the_training_fields():
    train_fields = TrainConfig.__dataclass_fields__
    for field in dataclasses.fields(compare.Config):
        if field.metadata.get("passed_to_train"):
            assert field.default == train_fields[field.name].default, field.name
    assert compare.Config().subsample == TrainConfig().subsample


def test_bc_on_atari_takes_its_own_learning_rate_and_yields_to_a_flag():
    assert resolve_config(TrainConfig(game="Pong", algo="bc", device="cpu")).lr == 1e-3
    assert resolve_config(TrainConfig(game="Pong", algo="iq", device="cpu")).lr == 1e-4
    assert resolve_config(TrainConfig(game="CartPole", algo="bc")).lr == 3e-4
    assert resolve_config(TrainConfig(game="Pong", algo="bc", lr=2e-4, device="cpu")).lr == 2e-4
