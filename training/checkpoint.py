"""Checkpoints: what a stage's file holds, written atomically, and a fit resumed from the last one.

Each epoch of a fit given a `stage` ends with `<path>/<stage>.pt` (the `Checkpoints` callback):
model, optimizer, scheduler, loss scaler, the fit's plan, epoch, history, RNG state and the
learner's `meta`. `resume=True` (`--resume`) continues a killed run from it, if the run asks for the
same fit (`FitPlan`) of the same model on the same data (`RESUME_MUST_MATCH`). A crash mid-write
leaves the previous file whole.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from serving.bundle.durable import write_atomically
from training.callbacks import Callback, EpochRecord, Fit
from training.errors import ConfigError, DataError

if TYPE_CHECKING:
    from training.learner import Learner

__all__ = [
    "RESUME_MUST_MATCH",
    "Checkpoints",
    "FitPlan",
    "atomic_save",
    "load_checkpoint",
    "load_stage",
    "load_weights",
    "resume_fit",
    "save_stage",
    "write_json_atomic",
]

RESUME_MUST_MATCH = ("task", "spec", "classes", "size", "stats")  # what makes it the same model and data


@dataclass(frozen=True)
class FitPlan:
    """What a fit was asked to do: a resumed run must be asked the same."""

    kind: str
    epochs: int
    lrs: tuple[float, ...]
    steps_per_epoch: int  # the schedule's length depends on it: a changed batch size is another fit

    def saved(self) -> dict[str, Any]:
        """As the checkpoint holds it (plain data: the rates as a list)."""
        return dataclasses.asdict(self) | {"lrs": list(self.lrs)}


class Checkpoints(Callback):
    """Resume before the first epoch when asked; after each epoch, the stage's checkpoint."""

    order = 20  # after MixedPrecision (its scaler), before DDP (a resume's freeze_to comes first)

    def before_fit(self, fit: Fit) -> None:
        if fit.resume:
            fit.start_epoch = resume_fit(fit)

    def after_epoch(self, fit: Fit) -> None:
        if fit.stage is not None and fit.learn.is_main:
            save_stage(fit.learn, fit.stage, fit)


def save_stage(learn: Learner[Any], stage: str, fit: Fit | None = None) -> Path:
    """Write model, optimizer (and, within `fit`, scheduler, scaler, plan and epoch), history, RNG
    state and `meta` to `<path>/<stage>.pt`, atomically. A stage saved outside a fit is complete."""
    path = learn.stage_path(stage)
    plan = None if fit is None else fit.plan
    epoch = None if fit is None else fit.epoch + 1
    atomic_save(
        {
            "format": 1,
            "model": learn.model.state_dict(),
            "opt": None if learn.opt is None else learn.opt.state_dict(),
            "sched": None if fit is None or fit.sched is None else fit.sched.state_dict(),
            "scaler": None if fit is None else fit.scaler.state_dict(),
            "plan": None if plan is None else plan.saved(),
            "epoch": epoch,
            "complete": plan is None or epoch == plan.epochs,
            "n_frozen": learn.n_frozen,
            "history": [dataclasses.asdict(r) for r in learn.history],
            "rng": torch.get_rng_state(),
            "meta": learn.meta,
        },
        path,
    )
    return path


def load_stage(learn: Learner[Any], stage: str, with_opt: bool = False) -> dict[str, Any]:
    """Load a stage's weights (and optimizer state if asked) into `learn`; returns the checkpoint."""
    path = learn.stage_path(stage)
    state = load_checkpoint(path)
    load_weights(learn.model, state, path)
    if with_opt and state.get("opt") is not None:
        learn.opt = learn.opt or learn.make_optimizer(learn.lr_range(1e-3))
        learn.opt.load_state_dict(state["opt"])
    return state


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Weights from a checkpoint already read (`path` names it in errors)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ConfigError(f"{path}: weights do not fit this model ({err})") from err


def resume_fit(fit: Fit) -> int:
    """Continue `fit` from its stage's last checkpoint; returns the number of epochs already done."""
    learn, plan = fit.learn, fit.plan
    if fit.stage is None or plan is None:
        raise ConfigError("resume needs the stage whose checkpoint to continue")
    path = learn.stage_path(fit.stage)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint {path} to continue from; start without --resume")
    state = load_checkpoint(path)
    saved = state.get("plan") or {}
    if saved != plan.saved():
        raise ConfigError(
            f"--resume: {path} was written by a different fit ({saved}); "
            f"asked for {dataclasses.asdict(plan)}. Repeat the original options."
        )
    for key in RESUME_MUST_MATCH:
        before, now = state.get("meta", {}).get(key), learn.meta.get(key)
        if before != now:
            raise ConfigError(f"--resume: {path} was trained with {key}={before!r}, this run has {now!r}")
    load_weights(learn.model, state, path)
    learn.freeze_to(int(state["n_frozen"]))
    fit.opt.load_state_dict(state["opt"])
    if fit.sched is not None and state.get("sched") is not None:
        fit.sched.load_state_dict(state["sched"])
    if state.get("scaler"):
        fit.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    learn.history = [EpochRecord(**r) for r in state["history"]]
    return int(state["epoch"] or 0)


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` to `path` atomically and durably."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `atomic_save`; only tensors and plain data are unpickled."""
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise DataError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(f"{path}: not a checkpoint written by train-kit")
    return state


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as indented JSON at `path`, atomically and durably."""
    write_atomically(path, (json.dumps(value, indent=2) + "\n").encode("utf-8"))
