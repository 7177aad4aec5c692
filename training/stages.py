"""The one run path: a run is a plan of stages, and one runner fits, resumes, saves and scores each.

A task plans its run (`TrainingTask.stages`): an image task one `fit_one_cycle` stage, sentiment
ULMFiT's several (language model, n-gram branch, the classifier thawed in three). Whatever differs
lives in the plan — how each learner is built, its freeze plan, its rates, its baseline, the keys it
adds — and the runner does the rest the same way for every stage of every task:

1. with `--resume`, a stage that has a checkpoint continues from it (a finished one only loads), a
   stage without one starts afresh (the run died before it), and a run whose first stage has none
   is refused: there is nothing to resume;
2. on a fresh run, a batch as the model sees it goes to `<out>/<stage>.batch.png` (where the stage
   draws one);
3. the freeze plan, then the fit, which leaves `<out>/<stage>.pt` complete;
4. the last epoch's metrics beside a trivial model's (`BaselineModel`) and the whole history go to
   `<out>/<stage>.metrics.json`, and its plot to `<out>/<stage>.curves.png`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from training.checkpoint import write_json_atomic
from training.config import TrainConfig
from training.curves import plot_curves
from training.errors import ConfigError
from training.learner import Learner
from training.metrics import Metric, metric_name

__all__ = ["BaselineModel", "OneCycle", "Stage", "StageFit", "run_stage", "run_stages"]


class StageFit(Protocol):
    """How a stage is fitted: it leaves `<out>/<stage>.pt` complete; with `resume` it continues
    from that file instead (a finished stage: only its weights and history are loaded)."""

    def __call__(self, learn: Learner[Any], stage: str, resume: bool) -> None: ...


@dataclass(frozen=True)
class OneCycle:
    """`fit_one_cycle`, checkpointed after every epoch (the learner's `Checkpoints` callback)."""

    epochs: int
    lr: float | slice
    pct_start: float = 0.3
    moms: tuple[float, float] = (0.95, 0.85)

    def __call__(self, learn: Learner[Any], stage: str, resume: bool) -> None:
        learn.fit_one_cycle(
            self.epochs, self.lr, stage=stage, resume=resume, pct_start=self.pct_start, moms=self.moms
        )


@dataclass(frozen=True)
class BaselineModel:
    """A model that never looks at its input (the most frequent tags, the majority class, the mean
    point), scored by the stage's own metrics: the level a trained stage has to beat."""

    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """(training targets, validation targets) → its predictions for the validation items."""
    y_train: torch.Tensor
    y_valid: torch.Tensor

    def scores(self, metrics: Sequence[Metric]) -> dict[str, float]:
        trivial = self.predict(self.y_train, self.y_valid)  # made when asked: a mask set's is large
        return {metric_name(m): float(m(trivial, self.y_valid)) for m in metrics}


@dataclass(frozen=True)
class Stage:
    """One step of a run; its name names its files in the learner's folder (`<name>.pt`, ...)."""

    name: str
    learner: Learner[Any]
    fit: StageFit
    freeze_to: int | None = None
    """Layer groups frozen before the fit (0: none, -1: all but the head; None: as built)."""
    baseline: BaselineModel | None = None
    report: Callable[[Learner[Any]], dict[str, Any]] | None = None
    """Keys the task adds to the stage's metrics once it is fitted (per-label scores, perplexity)."""
    preview: Callable[[Any, Path], object] | None = None
    """Draws a batch of the learner's data to the path given (`show_batch`), on a fresh run."""


def run_stages(stages: Iterable[Stage], cfg: TrainConfig) -> dict[str, Any]:
    """Run each stage of a plan in turn; returns the last one's metrics, the run's result.

    `stages` may be a generator: a plan that hands one stage's outcome to the next (sentiment's
    encoder) builds each stage only once the one before it has run."""
    result: dict[str, Any] = {}
    for number, stage in enumerate(stages):
        result = run_stage(stage, cfg, resume=_resumes(stage, cfg.resume, first=number == 0))
    return result


def run_stage(stage: Stage, cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Fit one stage (resumed if asked), write its metrics file and plot; returns the metrics."""
    learn, folder = stage.learner, stage.learner.path
    if stage.preview is not None and not resume and learn.is_main:
        stage.preview(learn.data, folder / f"{stage.name}.batch.png")
    if stage.freeze_to is not None:
        learn.freeze_to(stage.freeze_to)
    stage.fit(learn, stage.name, resume)
    result = stage_metrics(stage, cfg)
    if learn.is_main:  # under torchrun every rank scores (validation is gathered), rank 0 writes
        write_json_atomic(folder / f"{stage.name}.metrics.json", result)
        plot_curves(result, folder / f"{stage.name}.curves.png")
    return result


def stage_metrics(stage: Stage, cfg: TrainConfig) -> dict[str, Any]:
    """What `<stage>.metrics.json` holds: the last epoch, the baseline, every epoch, the options."""
    learn = stage.learner
    last = learn.history[-1]
    result: dict[str, Any] = {
        "stage": stage.name,
        "checkpoint": str(learn.stage_path(stage.name)),
        "epochs": len(learn.history),
        "train_loss": last.train_loss,
        "valid_loss": last.valid_loss,
        "metrics": last.metrics,
        "baseline": {} if stage.baseline is None else stage.baseline.scores(learn.metrics),
        "history": [dataclasses.asdict(r) for r in learn.history],
        "config": cfg.model_dump(mode="json"),
    }
    if stage.report is not None:
        result |= stage.report(learn)
    return result


def _resumes(stage: Stage, asked: bool, first: bool) -> bool:
    """Whether `--resume` continues this stage: yes where its checkpoint is; a later stage without
    one starts afresh (the run died before it), the first refuses (there is nothing to resume)."""
    path = stage.learner.stage_path(stage.name)
    if not asked or path.is_file():
        return asked
    if first:
        raise ConfigError(f"--resume: no checkpoint {path} to continue from; start without --resume")
    return False
