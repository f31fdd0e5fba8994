"""What runs before any training job: the checks that build the models on the `meta` device
(:mod:`.models`) and the fetching of datasets and pretrained weights (:mod:`.fetch`)."""

from prunebench.prepare.fetch import PREPARE_HINT, WEIGHTS_DIR_ENV, prepare, use_job_environment, use_weights_dir
from prunebench.prepare.models import resolve_checked

__all__ = ["PREPARE_HINT", "WEIGHTS_DIR_ENV", "prepare", "resolve_checked", "use_job_environment", "use_weights_dir"]
