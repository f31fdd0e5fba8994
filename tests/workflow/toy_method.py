"""A pruning method from outside the package, registered by a config's ``plugins: [tests.workflow.toy_method]``.

``magnitude`` prunes like Refill, ranking groups by the L1 magnitude of their weights whatever
``prune.importance`` says, and its gradient hook scales every gradient by a factor that falls
linearly from 1 to ``magnitude.grad_scale`` over each state, logging the factor as ``grad_scale``.
Everything prunebench needs to know about it is declared in its class: its settings section, what
its hook logs and its section of the comparison report. Like the built-in methods, the module
imports no torch until a hook runs (the Snakemake process imports it too).
"""

from __future__ import annotations

from prunebench.pruning.hooks import Column, Metric, ReportSection
from prunebench.pruning.refill import Refill
from prunebench.pruning.registry import register


class ScaleGradients:
    """The gradient hook: grad *= s_t, s_t = 1 - (1 - grad_scale) * (t + 1) / T over the state's T steps."""

    def __init__(self, params, grad_scale: float, total_steps: int):
        self.params, self.grad_scale, self.total = params, grad_scale, total_steps

    def __call__(self, step: int) -> dict[str, float]:
        import torch

        u = min(1.0, (step + 1) / self.total)  # the state's step: its learning-rate schedule's
        scale = 1.0 - (1.0 - self.grad_scale) * u
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, scale)
        return {"grad_scale": scale}  # a Python float: no read-back from the device


def last_scale(states, epochs):
    """Per state of the method: the factor its hook logged at the state's last epoch."""
    if "grad_scale" not in epochs:
        return None
    part = epochs[(epochs["epoch"] > 0) & epochs["grad_scale"].notna() & (epochs["grad_scale"] != 0)]
    return part.sort_values(["state", "epoch"]).groupby(["method", "seed", "state"], as_index=False).last()


@register
class Magnitude(Refill):
    """Refill with magnitude importance, and its gradients scaled down over each state."""

    name = "magnitude"
    settings = {
        "type": "object",
        "additionalProperties": False,
        "description": "The toy magnitude method's settings.",
        "properties": {
            "grad_scale": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "default": 1.0,
                "description": "The factor the gradients are scaled by at the end of each state.",
            }
        },
    }
    gradient_metrics = (*Refill.gradient_metrics, Metric("grad_scale", "gradient scale", "scale", 0.0))
    report_sections = (
        ReportSection(
            title="magnitude: gradient scale",
            text="The factor the method's gradient hook scaled the gradients by at each state's last step.",
            columns=(Column("gradient scale", "grad_scale", digits=3),),
            rows=last_scale,
        ),
    )

    def __init__(self, experiment, state, groupsets):
        super().__init__(experiment, state, groupsets)
        self.prune_cfg = {**self.prune_cfg, "importance": "l1"}
        self.hook: ScaleGradients | None = None

    def start(self, run, epochs_done: int) -> None:
        if self.state >= 1:
            params = [p for p in run.model.parameters() if p.requires_grad]
            total = run.epochs * run.steps_per_epoch
            self.hook = ScaleGradients(params, self.experiment["magnitude"]["grad_scale"], total)

    def gradient_hook(self) -> ScaleGradients | None:
        return self.hook
