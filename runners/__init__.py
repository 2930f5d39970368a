"""Command-line runners: one module per user command (`python -m runners.<name> --help`)."""
