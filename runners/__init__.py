"""Command-line runners: one module per user command (`python -m runners.<name> --help`)."""

import os

# Torch's OpenMP threads spin-wait by default; on a shared or busy 2-core machine that made one
# batch-8 CNN forward 30x slower (runners.bench measured 182-256 ms vs 6.7 ms with PASSIVE).
# Set before any runner imports torch; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
