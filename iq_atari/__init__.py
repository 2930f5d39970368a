"""iq_atari: IQ-Learn (inverse soft-Q imitation learning) for Atari and discrete-action games."""

__version__ = "0.1.0"
