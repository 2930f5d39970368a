"""Experts playing games: their episodes, a returns table, and demo files (`record_demos`).

One episode of any policy is `episodes.run_episode`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iq_atari.demo_library import DEMO_DIR, demo_filename
from iq_atari.demos import Trajectory, save_demos
from iq_atari.envs import AtariSettings, action_meanings, env_settings, make_env, resolve_game
from iq_atari.episodes import Episode, run_episode
from iq_atari.errors import DemoError
from iq_atari.experts import Expert, get_expert


def expert_episodes(
    game: str,
    expert: Expert,
    episodes: int,
    seed: int,
    settings: AtariSettings | None = None,
    progress: bool = True,
    render: bool = False,
    dart: float = 0.0,
    life_delay: int = 0,
    dart_actions: Sequence[int] | None = None,
) -> list[Episode]:
    """Play `episodes` episodes of `game` with `expert`; episode i starts from seed + i.

    `dart` > 0 injects noise as in DART (Laskey et al. 2017): on each step, with that
    probability, the env executes a uniformly random action instead of the expert's, and the
    trajectory still records the expert's action. The demos then show the expert correcting
    from states it would not reach itself, which is where an imitator's own mistakes lead it.
    The noise draws come from a generator seeded by (seed + i), apart from the env's; the random
    action is one of `dart_actions` (default: all of the env's).

    `life_delay` > 0 (Atari): at the first step and after each lost life the env executes NOOP
    for a random 0..N steps while the trajectory records the expert's actions. The demos then
    show the expert restarting play (Breakout's serve) from the still screen an imitator that
    missed the moment stands at, and would otherwise hold until the game is cut.
    """
    if not 0.0 <= dart < 1.0:
        raise DemoError(f"--dart: expected a probability in [0, 1), got {dart:g}")
    if life_delay < 0:
        raise DemoError(f"--life-delay: expected a step count >= 0, got {life_delay}")
    if life_delay > 0 and not resolve_game(game).is_atari:
        raise DemoError(f"--life-delay: {resolve_game(game).name} has no lives (Atari games only)")
    env = make_env(game, seed, settings=settings, render_mode="rgb_array" if render else None)
    n_actions = int(env.action_space.n)
    out = []
    try:
        bar = tqdm(
            range(episodes),
            desc=f"{expert.name} on {resolve_game(game).name}",
            unit="ep",
            disable=not progress,
            file=sys.stderr,
        )
        for i in bar:
            perturbs = []
            if life_delay > 0:
                lives = env.unwrapped.ale.lives  # type: ignore[attr-defined]
                delay_rng = np.random.default_rng([seed + i, 1])
                perturbs.append(noop_after_lost_life(life_delay, lives, delay_rng))
            if dart > 0:
                perturbs.append(
                    random_action_noise(
                        dart, n_actions, np.random.default_rng(seed + i), dart_actions
                    )
                )
            episode = run_episode(
                env,
                lambda obs: expert.act(obs, env),
                seed + i,
                on_reset=lambda: expert.reset(env),
                render=render,
                perturb=chain(perturbs) if perturbs else None,
            )
            out.append(episode)
            bar.set_postfix(ret=f"{episode.score:g}", len=episode.length)
    finally:
        env.close()
    return out


def random_action_noise(
    probability: float,
    n_actions: int,
    rng: np.random.Generator,
    choices: Sequence[int] | None = None,
) -> Callable[[int], int]:
    """With `probability`, a uniformly random action (of `choices`, default all `n_actions`) in
    place of the given one."""

    def perturb(action: int) -> int:
        if rng.random() >= probability:
            return action
        if choices is None:
            return int(rng.integers(n_actions))
        return int(choices[int(rng.integers(len(choices)))])

    return perturb


def noop_after_lost_life(
    max_steps: int, lives: Callable[[], int], rng: np.random.Generator
) -> Callable[[int], int]:
    """NOOP (action 0) for a random 0..`max_steps` steps at the first step and whenever
    `lives()` falls; the given action otherwise. Made once per episode."""
    last: list[int | None] = [None]
    left = [0]

    def perturb(action: int) -> int:
        now = lives()
        if last[0] is None or now < last[0]:
            left[0] = int(rng.integers(max_steps + 1))
        last[0] = now
        if left[0] > 0:
            left[0] -= 1
            return 0
        return action

    return perturb


def chain(perturbs: list[Callable[[int], int]]) -> Callable[[int], int]:
    """Apply each perturbation in turn to the expert's action."""

    def perturb(action: int) -> int:
        for step in perturbs:
            action = step(action)
        return action

    return perturb


def collect_episodes(
    game: str,
    expert: Expert,
    episodes: int,
    seed: int,
    settings: AtariSettings | None = None,
    progress: bool = True,
) -> list[Trajectory]:
    """Trajectories of `episodes` expert episodes; episode i starts from seed + i."""
    return [e.trajectory for e in expert_episodes(game, expert, episodes, seed, settings, progress)]


def returns_table(trajectories: list[Trajectory], seeds: list[int] | None = None) -> str:
    """A plain-text table of per-episode returns and lengths, with mean / std / min / max."""
    rets = np.array([t.ret for t in trajectories])
    lens = np.array([len(t) for t in trajectories])
    seeds = seeds or list(range(len(trajectories)))
    lines = [f"{'episode':>7} {'seed':>6} {'return':>10} {'length':>8} {'end':>10}"]
    for i, (t, s) in enumerate(zip(trajectories, seeds, strict=True)):
        end = "terminated" if t.terminated else ("truncated" if t.truncated else "-")
        lines.append(f"{i:>7} {s:>6} {t.ret:>10g} {len(t):>8} {end:>10}")
    lines.append(
        f"{'mean':>14} {rets.mean():>10.2f} {lens.mean():>8.1f}\n"
        f"{'std':>14} {rets.std():>10.2f} {lens.std():>8.1f}\n"
        f"{'min..max':>14} {f'{rets.min():g}..{rets.max():g}':>10} "
        f"{f'{lens.min()}..{lens.max()}':>8}"
    )
    return "\n".join(lines)


def demo_meta(
    game: str, expert: Expert, seed: int, seeds: list[int], settings: AtariSettings | None
) -> dict:
    """The metadata record of a demo file recorded from `expert` on `game`."""
    spec = resolve_game(game)
    env = make_env(game, settings=settings)
    try:
        n_actions, meanings = int(env.action_space.n), action_meanings(env)
        obs_shape = list(env.observation_space.shape)
    finally:
        env.close()
    return {
        "env_id": spec.env_id,
        "env_kwargs": env_settings(game, settings),
        "frame_stack": obs_shape[0] if spec.is_atari else 1,
        "obs_shape": obs_shape,
        "n_actions": n_actions,
        "action_meanings": meanings,
        "expert": {"name": expert.name, **expert.provenance},
        "seed": seed,
        "episode_seeds": seeds,
    }


def record_demos(
    game: str,
    expert: str | None,
    episodes: int,
    seed: int,
    out: Path | None = None,
    min_return: float | None = None,
    progress: bool = True,
    settings: AtariSettings | None = None,
    dart: float = 0.0,
    life_delay: int = 0,
    dart_actions: str = "all",
) -> Path:
    """Record `episodes` expert episodes, print their table, save a demo file; return its path.

    `min_return` keeps only episodes scoring at or above it (the file name counts kept episodes).
    `dart` (random executed actions) and `life_delay` (NOOPs after a lost life) are as in
    `expert_episodes`; the metadata records both. `dart_actions` "expert" draws the random
    action from the expert's own actions (its provenance's `actions`): an imitator never takes an
    action its demos never show (Pong's FIRE variants, which change a return at contact), so
    those are not the mistakes to recover from. The default path is
    expert_demos/<Game>_<expert>_<N>ep.npz, with the expert named <expert>-dart<p> under noise
    (-darte<p> from the expert's actions) and <expert>-delay<N> with delays.
    """
    if episodes < 1:
        raise DemoError(f"--episodes: expected a positive count, got {episodes}")
    if dart_actions not in ("all", "expert"):
        raise DemoError(f"--dart-actions: expected all or expert, got {dart_actions!r}")
    policy = get_expert(game, expert)
    choices = None
    if dart_actions == "expert":
        choices = policy.provenance.get("actions")
        if not choices:
            raise DemoError(
                f"--dart-actions expert: the expert {policy.name!r} does not list its actions"
            )
    played = expert_episodes(
        game,
        policy,
        episodes,
        seed,
        settings,
        progress,
        dart=dart,
        life_delay=life_delay,
        dart_actions=choices,
    )
    print(returns_table([e.trajectory for e in played], [e.seed for e in played]))
    kept = [e for e in played if min_return is None or e.score >= min_return]
    if min_return is not None:
        print(f"kept {len(kept)}/{len(played)} episodes with return >= {min_return:g}")
    if not kept:
        raise DemoError(f"--min-return: no episode reached {min_return:g}; nothing saved")
    meta = demo_meta(game, policy, seed, [e.seed for e in kept], settings)
    if min_return is not None:
        meta["min_return"] = min_return
    name = policy.name
    if dart > 0:
        meta["dart"] = {
            "probability": dart,
            "note": "each step the env executed a uniformly random action with this probability; "
            "`actions` hold the expert's choice, rewards and next frames the executed action's",
            **({"random_actions": [int(a) for a in choices]} if choices else {}),
        }
        name += f"-dart{'e' if choices else ''}{dart:g}"
    if life_delay > 0:
        meta["life_delay"] = {
            "max_steps": life_delay,
            "note": "at the first step and after each lost life the env executed NOOP for a "
            "random 0..max_steps steps; `actions` hold the expert's choice, rewards and next "
            "frames the executed NOOP's",
        }
        name += f"-delay{life_delay}"
    path = Path(out) if out is not None else DEMO_DIR / demo_filename(game, name, len(kept))
    save_demos(path, [e.trajectory for e in kept], meta)
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes, {len(kept)} episodes, "
        f"{sum(e.length for e in kept):,} steps)"
    )
    return path
