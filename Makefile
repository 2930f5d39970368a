# iq_atari: every user target is a thin wrapper over `python -m runners.<name>`.
PYTHON ?= python3
GAME ?= Pong
SEED ?= 0
EPISODES ?=
STEPS ?=
MODE ?=
DEMOS ?=
EXPERT ?=
ALGO ?=
RUN ?=
CHECKPOINT ?=
DEMOS_LIST ?=
SEEDS ?=
GRID ?= examples/cartpole_sweep.toml
ADDRESS ?=
MINARI ?=
ARGS ?=

# Optional flags, passed only when the variable is set.
opt = $(if $(2),$(1) $(2))

.PHONY: install test test-all lint format demos minari train video ship evaluate agreement compare bench expert distill sweep clean help

help:
	@echo "make install | test | test-all | lint | format"
	@echo "make demos GAME=Pong [EPISODES=N] [EXPERT=name-or-path] [SEED=S] [DART=p]"
	@echo "make minari GAME=CartPole MINARI=namespace/name-v0 [DEMOS=file]"
	@echo "make train GAME=Pong [STEPS=N] [MODE=offline|online] [DEMOS=path] [SEED=S]"
	@echo "make video GAME=Pong [RUN=dir|CHECKPOINT=path] [EXPERT=name] [EPISODES=N]"
	@echo "make ship RUN=dir|CHECKPOINT=path   (score it, write expert_demos/agents/<algo>-<Game>.pt)"
	@echo "make evaluate RUN=dir|CHECKPOINT=path [EPISODES=N] [ARGS='--seed 777000']   (score it)"
	@echo "make agreement RUN=dir|CHECKPOINT=path [DEMOS=a.npz,b.npz]   (where it parts from its expert)"
	@echo "make compare GAME=CartPole [DEMOS_LIST=1,3,10] [SEEDS=3] [STEPS=N]"
	@echo "make expert GAME=CartPole [ALGO=ppo|dqn] [STEPS=N]"
	@echo "make distill GAME=Pong [EXPERT=teacher]"
	@echo "make bench"
	@echo "make sweep GRID=examples/cartpole_sweep.toml [ADDRESS=ray://host:10001]"

install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev,zoo,box2d,sweep,minari]" torch==2.13.0

test:
	$(PYTHON) -m pytest -m "not slow" -q

test-all:
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

demos:
	$(PYTHON) -m runners.demos --game $(GAME) --seed $(SEED) $(call opt,--episodes,$(EPISODES)) $(call opt,--expert,$(EXPERT)) $(call opt,--dart,$(DART)) $(ARGS)

minari:
	$(PYTHON) -m runners.demos --game $(GAME) --export-minari $(or $(MINARI),$(error set MINARI=namespace/name-v0, the dataset id)) $(call opt,--demos,$(DEMOS)) $(ARGS)

train:
	$(PYTHON) -m runners.train --game $(GAME) --seed $(SEED) $(call opt,--steps,$(STEPS)) $(call opt,--mode,$(MODE)) $(call opt,--demos,$(DEMOS)) $(call opt,--algo,$(ALGO)) $(ARGS)

video:
	$(PYTHON) -m runners.record --game $(GAME) --seed $(SEED) $(call opt,--run,$(RUN)) $(call opt,--checkpoint,$(CHECKPOINT)) $(call opt,--expert,$(EXPERT)) $(call opt,--episodes,$(EPISODES)) $(ARGS)

ship:
	$(PYTHON) -m runners.ship $(call opt,--run,$(RUN)) $(call opt,--checkpoint,$(CHECKPOINT)) $(call opt,--episodes,$(EPISODES)) $(ARGS)

evaluate:
	$(PYTHON) -m runners.evaluate $(call opt,--run,$(RUN)) $(call opt,--checkpoint,$(CHECKPOINT)) $(call opt,--episodes,$(EPISODES)) $(ARGS)

agreement:
	$(PYTHON) -m runners.agreement $(call opt,--run,$(RUN)) $(call opt,--checkpoint,$(CHECKPOINT)) $(call opt,--demos,$(DEMOS)) $(ARGS)

compare:
	$(PYTHON) -m runners.compare --game $(GAME) $(call opt,--num-demos,$(DEMOS_LIST)) $(call opt,--seeds,$(SEEDS)) $(call opt,--steps,$(STEPS)) $(ARGS)

bench:
	$(PYTHON) -m runners.bench $(ARGS)

expert:
	$(PYTHON) -m runners.expert --game $(GAME) --seed $(SEED) $(call opt,--algo,$(ALGO)) $(call opt,--steps,$(STEPS)) $(ARGS)

distill:
	$(PYTHON) -m runners.distill --game $(GAME) --seed $(SEED) $(call opt,--expert,$(EXPERT)) $(ARGS)

sweep:
	$(PYTHON) -m runners.sweep --grid $(GRID) $(call opt,--address,$(ADDRESS)) $(ARGS)

clean:
	rm -rf runs .pytest_cache .ruff_cache
