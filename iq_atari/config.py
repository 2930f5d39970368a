"""Training configuration: `TrainConfig` (one documented field per CLI flag of runners.train),
the presets per env family and mode that fill its unset fields, and the checks on a combination.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from iq_atari.envs import resolve_game
from iq_atari.errors import InputError
from iq_atari.iq import Divergence, IQLossConfig, RegularizeOver, ValueTerm
from iq_atari.iq_learner import IQLearnerConfig
from iq_atari.networks import BF16_HELP, DEFAULT_ENCODER, ENCODER_HELP, Activation, Encoder
from iq_atari.utils import bf16_is_fast, resolve_device

T = TypeVar("T")


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A documented field; the same metadata as runners.common.arg, so it doubles as a CLI flag."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


# Family presets: fields left None in TrainConfig take these. Beside each, the official code's
# value (conf/agent/softq.yaml, conf/env/{pong,cartpole}.yaml, scripts/run_{atari,offline}.sh):
#   atari:   batch 64 (64), lr 1e-4 (1e-4), alpha 1e-3 (init_temp 1e-3), eval every 5000 (5e3),
#            replay 100k frames (replay_mem 1e5, half of it online), learning_starts 5000
#            (initial_mem 5000), 20 demos (20), 1 env step per update (1)
#   classic: batch 64 (32), lr 3e-4 (1e-4), alpha 1e-2 (0.01; 1e-3 in run_offline.sh), 64-64 ELU
#            MLP (OfflineQNetwork), eval every 1000 (1e3), replay 50k (5e4), learning_starts 1000
#            (initial_mem 1280). Classic takes lr 3e-4 / batch 64 rather than the official
#            1e-4 / 32 because it learns faster (docs/RESULTS.md, "IQ-Learn learning tests").
PRESETS: dict[str, dict[str, Any]] = {
    "atari": dict(
        steps=50_000,
        batch_size=64,
        lr=1e-4,
        alpha=1e-3,
        eval_interval=5_000,
        average_from=40_000,
        replay_size=100_000,
        learning_starts=5_000,
        n_envs=4,
        demo_episodes=20,
        threads=0,
        encoder=DEFAULT_ENCODER,
        lr_decay_from=0,
        bf16=False,
    ),
    "classic": dict(
        steps=10_000,
        batch_size=64,
        lr=3e-4,
        alpha=1e-2,
        eval_interval=1_000,
        average_from=0,
        replay_size=50_000,
        learning_starts=1_000,
        n_envs=1,
        demo_episodes=10,
        threads=1,
        encoder=DEFAULT_ENCODER,
        lr_decay_from=0,
        bf16=False,
    ),
}
# Per-game recipes over the family preset, each what made the game's shipped agent and measured
# better there than the family preset (docs/RESULTS.md). bf16=True means "where the hardware has
# bf16 instructions" (utils.bf16_is_fast); an explicit --bf16 / --no-bf16 is taken as given.
GAME_PRESETS: dict[str, dict[str, Any]] = {
    "Pong": dict(encoder="fine", lr_decay_from=25_000, bf16=True),
}
# Loss options that depend on the mode; fields left None in TrainConfig take these.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "offline": dict(value_term="value_expert", regularize_over="expert"),
    "online": dict(value_term="value_expert", regularize_over="policy"),
}
# Presets that depend on the algorithm. BC keeps its best-validation weights instead of an average.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {"bc": dict(average_from=0)}
# Presets of an algorithm in one family, over ALGO_DEFAULTS. BC on Atari takes lr 1e-3: the family's
# 1e-4 suits IQ, whose policy logits are Q / alpha (alpha 1e-3), but leaves a cross-entropy on raw
# logits far from fitted at 20k updates (docs/RESULTS.md, "BC's learning rate").
FAMILY_ALGO_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {("atari", "bc"): dict(lr=1e-3)}
# Fields a saved config may lack (written before they existed), with the value that run had.
ADDED_FIELDS: dict[str, Any] = {
    "average_from": 0,
    "encoder": DEFAULT_ENCODER,
    "lr_decay_from": 0,
    "bf16": False,
    "augment_from": 0,
    "val_demos": None,
}


def _show(value: Any) -> str:
    """A preset value as the help text shows it (1e-4 rather than 0.0001)."""
    if isinstance(value, float) and 0 < value < 0.1:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return str(value)


def _preset(name: str, help: str, **kwargs: Any) -> Any:
    """A field left None that its family's (or mode's) preset fills: the help ends with the
    values of PRESETS / MODE_DEFAULTS, so --help shows them as they are."""
    table = PRESETS if name in PRESETS["atari"] else MODE_DEFAULTS
    label = {"atari": "Atari"}  # the family's name as the docs write it
    table = {**table, **{k: v for k, v in GAME_PRESETS.items() if name in v}}
    table.update(
        {
            f"{algo.upper()} on {label.get(family, family)}": v
            for (family, algo), v in FAMILY_ALGO_DEFAULTS.items()
            if name in v
        }
    )
    shown = ", ".join(f"{label.get(k, k)} {_show(values[name])}" for k, values in table.items())
    return _opt(None, f"{help} (default: {shown})", **kwargs)


@dataclass
class TrainConfig:
    """Everything a training run needs. None means the preset of the game's family (PRESETS) or
    of the mode (MODE_DEFAULTS). The loss and learner options keep the defaults of their own
    dataclasses (iq.IQLossConfig, iq_learner.IQLearnerConfig), which are built from these by
    name."""

    game: str = _opt("CartPole", "game: short Atari name (Pong), gymnasium id (CartPole-v1)")
    algo: Literal["iq", "bc"] = _opt("iq", "iq: IQ-Learn; bc: behavioural cloning")
    mode: Literal["offline", "online"] = _opt(
        "offline", "offline: expert data only; online: also the agent's own transitions"
    )
    demos: str | None = _opt(
        None, "demo file (.npz) or minari:DATASET_ID; default: expert_demos/, recorded if missing"
    )
    num_demos: int | None = _opt(
        None, "use the first N episodes of the demos (default all)", positive=True
    )
    demo_draw: int | None = _opt(
        None,
        "train on --num-demos episodes drawn at random with this seed instead of the first N "
        "(to measure how much the choice of demos matters)",
    )
    val_demos: str | None = _opt(
        None,
        "held-out demo file(s) of the same expert, comma-separated, not trained on: each "
        "evaluation logs how often the greedy policy picks their actions (eval/val_agreement)",
    )
    subsample: int = _opt(
        1,
        "use every k-th transition of each demo episode (official expert.subsample_freq)",
        positive=True,
    )
    steps: int | None = _preset("steps", "gradient updates", positive=True)
    seed: int = _opt(0, "seed of networks, sampling and envs")
    run_dir: str | None = _opt(None, "run directory (default runs/<game>/<algo>-<seed>-<time>)")
    resume: bool = _opt(
        False,
        "continue the run in --run-dir from checkpoints/last.pt, with its settings (other flags "
        "than --steps, --device, --threads, --progress must match them)",
    )
    device: str = _opt("auto", "auto, cpu or cuda")
    batch_size: int | None = _preset(
        "batch_size", "expert batch size; online adds as many agent samples", positive=True
    )
    lr: float | None = _preset("lr", "Adam learning rate")
    lr_decay_from: int | None = _preset(
        "lr_decay_from",
        "from this update on, the learning rate falls linearly from --lr towards 0 at --steps "
        "(the last update takes lr / (steps - N)); 0: constant",
    )
    gamma: float = _opt(IQLossConfig.gamma, "discount")
    alpha: float | None = _preset("alpha", "soft-Q temperature")
    learn_alpha: bool = _opt(False, "learn alpha towards a target entropy")
    value_term: ValueTerm | None = _preset("value_term", "second loss term")
    divergence: Divergence = _opt(IQLossConfig.divergence, "f-divergence of the expert term")
    chi2_alpha: float = _opt(IQLossConfig.chi2_alpha, "chi2 regulariser weight 1/(4 chi2_alpha)")
    regularize_over: RegularizeOver | None = _preset(
        "regularize_over",
        "chi2 regulariser over expert, all, or expert + agent states with policy actions",
    )
    next_v: Literal["online", "target"] = _opt(
        IQLearnerConfig.next_v, "V(s') from the online or a target net"
    )
    tau: float = _opt(IQLearnerConfig.tau, "target update rate (1 = hard copy)")
    target_interval: int = _opt(1000, "updates between target updates", positive=True)
    absorbing: bool = _opt(
        False,
        "IQ: terminations lead to an absorbing state with a learned value instead of V = 0 (DAC)",
    )
    grad_penalty: float = _opt(
        IQLearnerConfig.grad_penalty, "gradient penalty weight (online only; 0 = off)"
    )
    augment_shift: int = _opt(
        0,
        "Atari: random-shift augmentation, pad frames by N edge pixels and crop back at a random "
        "offset per sample (DrQ uses 4; 0 = off)",
    )
    augment_from: int = _opt(
        0,
        "Atari: shift frames only from this update on (the earlier updates train on the frames "
        "as recorded); 0: from the start",
    )
    hidden: str = _opt("64,64", "MLP hidden widths for vector observations")
    activation: Activation = _opt("elu", "MLP activation")
    encoder: Encoder | None = _preset("encoder", ENCODER_HELP)
    bf16: bool | None = _preset(
        "bf16", BF16_HELP + "; a preset's True applies only where the hardware has bf16"
    )
    eval_interval: int | None = _preset(
        "eval_interval", "updates between evaluations", positive=True
    )
    average_from: int | None = _preset(
        "average_from",
        "IQ: from this update on, snapshot the policy at every evaluation and evaluate, keep and "
        "ship the uniform mean of the snapshots (weight averaging, SWA); training goes on with "
        "the last weights; 0: off",
    )
    eval_episodes: int = _opt(10, "greedy evaluation episodes", positive=True)
    log_interval: int = _opt(100, "updates between train/ and perf/ log rows", positive=True)
    replay_size: int | None = _preset(
        "replay_size", "online replay capacity in frames", positive=True
    )
    learning_starts: int | None = _preset(
        "learning_starts", "online: env steps before the first update"
    )
    n_envs: int | None = _preset("n_envs", "online: envs stepped together", positive=True)
    env_steps_per_update: float = _opt(1.0, "online: env steps collected per update")
    demo_episodes: int | None = _preset(
        "demo_episodes", "episodes to record when no demos exist", positive=True
    )
    threads: int | None = _preset(
        "threads",
        "torch CPU threads, 0: torch's default (small MLPs run fastest on one thread)",
    )
    runs_root: str = _opt("runs", "parent of the default run directories")
    tensorboard: bool = _opt(True, "write TensorBoard events")
    progress: bool = _opt(True, "show progress bars")
    reward_check_episodes: int = _opt(
        3, "IQ: episodes per policy of the recovered-vs-true reward check after training (0: off)"
    )
    reward_check_max_steps: int = _opt(
        1_000,
        "IQ: the reward check cuts each episode at this many agent steps (whole Atari games run "
        "far longer)",
        positive=True,
    )
    video_every: int = _opt(
        0, "record a greedy episode to videos/update-N.mp4 every N evaluations (0: off)"
    )
    video_max_steps: int = _opt(2_000, "agent steps at most in a training video", positive=True)


def _check_update_index(config: TrainConfig, name: str) -> None:
    """An update number a schedule starts from (0: from the start) must lie within the run."""
    value = getattr(config, name)
    if not 0 <= value < config.steps:
        raise InputError(
            f"--{name.replace('_', '-')} must be >= 0 and below --steps ({config.steps}), "
            f"got {value}"
        )


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill None fields from the family preset and the mode; check the combination."""
    spec = resolve_game(config.game)
    family = "atari" if spec.is_atari else "classic"
    fill = {
        **PRESETS[family],
        **GAME_PRESETS.get(spec.name, {}),
        **MODE_DEFAULTS[config.mode],
        **ALGO_DEFAULTS.get(config.algo, {}),
        **FAMILY_ALGO_DEFAULTS.get((family, config.algo), {}),
    }
    values = {k: v for k, v in fill.items() if getattr(config, k) is None}
    if values.get("bf16"):
        values["bf16"] = bf16_is_fast(resolve_device(config.device))
    steps = config.steps or values.get("steps")
    if values.get("lr_decay_from", 0) >= steps:  # a preset's decay start past a shorter run
        values["lr_decay_from"] = 0
    config = dataclasses.replace(config, game=spec.name, **values)
    if config.algo == "bc" and config.mode == "online":
        raise InputError("--algo bc trains offline only; use --mode offline")
    if config.average_from and config.algo == "bc":
        raise InputError(
            "--average-from is an IQ option (BC keeps its best-validation weights); use 0"
        )
    if config.average_from < 0:
        raise InputError(f"--average-from must be >= 0 updates, got {config.average_from}")
    _check_update_index(config, "lr_decay_from")
    if config.absorbing and config.algo == "bc":
        raise InputError("--absorbing is an IQ option (BC has no value to bootstrap)")
    if config.augment_shift < 0:
        raise InputError(f"--augment-shift must be >= 0 pixels, got {config.augment_shift}")
    if config.augment_shift and not spec.is_atari:
        raise InputError(
            f"--augment-shift shifts image frames; {spec.name} has vector observations"
        )
    _check_update_index(config, "augment_from")
    if config.augment_from and not config.augment_shift:
        raise InputError("--augment-from needs --augment-shift N (the pixels to shift by)")
    if config.grad_penalty > 0 and config.mode == "offline":
        raise InputError("--grad-penalty needs agent samples; use --mode online")
    if config.resume and config.run_dir is None:
        raise InputError("--resume needs --run-dir (the run to continue)")
    for name in ("lr", "alpha", "tau", "env_steps_per_update", "gamma"):
        if not getattr(config, name) > 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(config, name)}")
    if config.gamma > 1 or config.tau > 1:
        raise InputError("--gamma and --tau must be at most 1")
    loss_config(config)  # raises on a bad option value
    return config


def options_from(cls: type[T], config: TrainConfig, **values: Any) -> T:
    """A `cls` options dataclass whose fields take the TrainConfig fields of the same names
    (those TrainConfig lacks keep their defaults, unless given in `values`)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.name in train_fields
    }
    return cls(**{**shared, **values})


def loss_config(config: TrainConfig) -> IQLossConfig:
    """The IQ loss options of a resolved config."""
    return options_from(IQLossConfig, config)


def train_field(name: str, help: str | None = None) -> Any:
    """TrainConfig's field `name` (default, help, checks) for a runner's config that passes it on
    to every run it trains (`passed_to_train`); `help` rewords it for that runner."""
    field = TrainConfig.__dataclass_fields__[name]
    metadata = {**field.metadata, "passed_to_train": True}
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(default=field.default, metadata=metadata)


def passed_to_train(config: Any) -> dict[str, Any]:
    """The values of a runner config's `train_field`s, by name."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.metadata.get("passed_to_train")
    }


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise InputError(f"--hidden: expected comma-separated positive widths, got {text!r}")
    return widths


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a saved dict; keys this version does not know are ignored, and those
    added since (ADDED_FIELDS) take the value the run had before them."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**ADDED_FIELDS, **{k: v for k, v in values.items() if k in known}})
