"""Command-line runners: one module per user command (`python -m runners.<name> --help`)."""

import os

# Torch's OpenMP threads spin-wait by default, which on a shared or busy machine takes the cores
# the other threads need and makes small CNN forwards many times slower (docs/RESULTS.md,
# "Throughput and memory"). Set before any runner imports torch; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
