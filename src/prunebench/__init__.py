"""prunebench: iterative structured-pruning experiments on vision models."""

__version__ = "0.1.0"
