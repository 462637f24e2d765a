"""Bookkeeping of a training run: step/best/history state saved with checkpoints, the loss-curve picture,
finding the newest checkpoint, and whether an accelerator device is present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

CHECKPOINTS = "checkpoints"


class TrainerState:
    """Step, best score, logged history and evaluations of a run (JSON); saved with every checkpoint."""

    def __init__(self):
        self.step = 0
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.history: List[Dict[str, Any]] = []
        self.evals: List[Dict[str, Any]] = []

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "best": self.best, "best_step": self.best_step, "history": self.history,
                "evals": self.evals}

    def load(self, data: Dict[str, Any]) -> None:
        self.step = int(data["step"])
        self.best, self.best_step = data.get("best"), data.get("best_step")
        self.history, self.evals = list(data.get("history", [])), list(data.get("evals", []))


def save_loss_curve(state: TrainerState, path: Path) -> None:
    """``loss_curve.png``: logged loss (and its running mean) and the triplet accuracies of the evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not state.history:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [h["step"] for h in state.history]
    axes[0].plot(steps, [h["loss"] for h in state.history], lw=0.8,
                 label="loss (mean over the logging window and processes)")
    if len(steps) > 10:
        k = max(2, len(steps) // 20)
        losses = torch.tensor([h["loss"] for h in state.history])
        smooth = torch.nn.functional.avg_pool1d(losses[None, None], k, 1).flatten().tolist()
        axes[0].plot(steps[k - 1:], smooth, lw=2, label=f"running mean ({k})")
    axes[0].set_xlabel("step"), axes[0].set_ylabel("loss"), axes[0].legend(), axes[0].grid(alpha=0.3)
    for key in sorted({k for e in state.evals for k in e if k.endswith("point_triplet")}):
        pts = [(e["step"], e[key]) for e in state.evals if key in e]
        axes[1].plot(*zip(*pts), marker="o", label=key)
    axes[1].set_xlabel("step"), axes[1].set_ylabel("triplet accuracy"), axes[1].grid(alpha=0.3)
    if axes[1].lines:
        axes[1].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def has_accelerator_device() -> bool:
    """A CUDA, XPU or MPS device is present (else accelerate must be told to use the CPU)."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return bool(torch.cuda.is_available() or (xpu is not None and xpu.is_available())
                or (mps is not None and mps.is_available()))


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    """Newest complete ``checkpoints/step-N`` folder of a run, or None."""
    folder = output_dir / CHECKPOINTS
    found = sorted((p for p in folder.glob("step-*") if (p / "trainer_state.json").is_file()),
                   key=lambda p: int(p.name.split("-")[1])) if folder.is_dir() else []
    return found[-1] if found else None


__all__ = ["CHECKPOINTS", "TrainerState", "has_accelerator_device", "latest_checkpoint", "save_loss_curve"]
