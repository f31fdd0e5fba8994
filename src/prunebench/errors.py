"""Errors that reach the user: each names the problem and the fix in one message."""


class PrunebenchError(Exception):
    """Base class for errors whose message is meant for the user as is."""


class ConfigError(PrunebenchError):
    """The experiment configuration is invalid."""


class DataError(PrunebenchError):
    """A dataset is missing or unreadable."""


class ModelError(PrunebenchError):
    """A model cannot be built or its weights cannot be loaded."""


class CheckpointError(PrunebenchError):
    """A checkpoint is corrupt or belongs to another experiment, method, model or state."""


class TrainingError(PrunebenchError):
    """Training stopped because the run went wrong (NaN or diverging loss)."""


class WriteError(PrunebenchError, OSError):
    """A file could not be written (a full disk, a missing permission...); names the file and the cause."""


class StateBusyError(PrunebenchError):
    """Another process is training the same prune state."""


class ResultsError(PrunebenchError):
    """A results file (a state's metrics.jsonl or summary.json) is damaged: names the file, the line and the fix."""
