"""What every training task answers: the one contract a new task implements on the training side.

A task module (`multilabel.py`, `segmentation.py`, ...) holds everything that differs by task in the
kit: its name, its options (`settings`, a `TrainConfig` subclass: the flags of `train-kit train
<task>`, the keys of its `--config` file, and its defaults), the demo data `train-kit data <task>`
builds (`demo_data`), the stages its run is made of (`stages`: an image task's one, built from its
data answers, network spec, loss, metrics and baseline in `setup`; sentiment's several), the
postprocess its bundle pickles and how its export is checked (`export_plan`), and how `finetune`
reads its feedback. Its serving twin (`served`) lives in `serving.bundle.tasks`. The rest of
`training` asks the registry (`training.tasks.task_for`) and never branches on a task's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from serving.bundle.export import ParityCheck
from serving.bundle.networks import NetworkSpec
from serving.bundle.pipeline import Preprocess
from serving.bundle.tasks import ServedTask
from training.config import TrainConfig, load_config
from training.data import ItemList, LabelledData
from training.data.batch_transforms import TargetKind
from training.data.labellers import Labeller
from training.errors import ConfigError
from training.learner import LossFunc, Reporter
from training.metrics import Metric
from training.stages import Stage
from training.tasks.demo_data import DemoData

__all__ = ["Baseline", "ExportOptions", "ExportPlan", "Resolution", "TaskSetup", "TrainingTask"]

C = TypeVar("C", bound=TrainConfig)

Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(training targets, validation targets) → predictions for the validation items."""
Resolution = Literal["squish", "native"]
"""How an exported image model takes an image: squashed to the training size, or (a segmenter) at
its own resolution."""


@dataclass
class TaskSetup:
    """An image task's run, ready to fit: labelled data, network spec, loss, metrics, baseline."""

    src: LabelledData
    spec: NetworkSpec
    loss_func: LossFunc
    metrics: list[Metric]
    baseline: Baseline
    primary: str
    """The metric that says whether one model is better than another (fine-tuning gates on it)."""
    higher_is_better: bool = True
    void: int | None = None
    """Segmentation: the code ignored by loss and metrics, and painted where augmentation uncovers."""
    metrics_for: Callable[[ItemList], list[Metric]] | None = None
    """The metrics for other validation items, where they depend on the items (pose: image sizes)."""
    targets: TargetKind = "labels"
    """What moves with an image under geometric augmentation: nothing (labels), a mask, points."""
    flip_pairs: tuple[tuple[int, int], ...] = ()
    """Pose: indices of the points that swap names on a horizontal flip."""
    per_label: Callable[[torch.Tensor, torch.Tensor], dict[str, dict[str, float]]] | None = None
    """(validation predictions, targets) → each label's scores, written beside the metrics."""


@dataclass(frozen=True)
class ExportOptions:
    """What `train-kit export` asks of an export: how many validation items its parity check runs,
    the largest score difference it allows, and how the bundle takes images."""

    parity_items: int = 64
    tolerance: float = 1e-2
    resolution: Resolution = "squish"


@dataclass(frozen=True)
class ExportPlan:
    """What `serving.bundle.export.write_bundle` needs beyond the network: the bundle's pre- and
    postprocessing, a prepared batch to trace, and the parity check that must pass to publish."""

    preprocess: Preprocess
    postprocess: Any
    example: np.ndarray
    check: ParityCheck
    calibration: np.ndarray | None = None
    """Training images, prepared as the bundle prepares them, to calibrate an int8 CPU graph
    (`serving.bundle.cpu_graph`); None: the bundle gets no CPU graph."""


class TrainingTask(Generic[C]):
    """One task's training side. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    settings: type[C]
    """The task's options: `train-kit train <task>`'s flags, its TOML keys, its defaults."""
    served: ClassVar[ServedTask]
    """The serving twin: what the bundle answers, and the feedback layout the server writes."""
    spec_type: ClassVar[type[NetworkSpec]]
    demo_data: ClassVar[type[DemoData] | None] = None
    """What `train-kit data <task>` builds (None: the task has no demo data command)."""
    older_commands: ClassVar[tuple[str, ...]] = ()
    """Top-level `train-kit` names that run `train <task>` too, kept for the scripts that use them."""
    sweeps_rates: ClassVar[bool] = False
    """Whether `train-kit lr-find <task>` sweeps rates for it: one learner built from its options."""

    def load_config(self, path: Path | None, overrides: dict[str, Any]) -> C:
        """This task's options from a TOML file (if any) and flags: a key it does not take is refused."""
        return load_config(self.settings, path, overrides)

    def saved_config(self, values: Mapping[str, Any]) -> C:
        """The options a checkpoint was trained with. Checkpoints from before each task had its own
        options hold every task's keys: those this task does not read are dropped."""
        known = {key: value for key, value in values.items() if key in self.settings.model_fields}
        return self.settings.model_validate(known | {"task": self.name})

    def spec(self, meta: dict[str, Any]) -> NetworkSpec:
        """The network spec a checkpoint's `meta` was trained with."""
        return self.spec_type(**meta["spec"])

    # -- training ---------------------------------------------------------------------------------
    def stages(self, cfg: C, reporter: Reporter | None = None) -> Iterable[Stage]:
        """The stages `train-kit train <task>` runs, in order, each built when its turn comes;
        `training.stages.run_stages` fits, resumes, saves and scores them all alike."""
        raise NotImplementedError

    def setup(self, cfg: C) -> TaskSetup:
        """Data, network, loss, metrics and baseline of an image stage (the data block's answers)."""
        raise ConfigError(
            f"{self.name} builds its own learners (train-kit train {self.name}); it has no image setup"
        )

    # -- export -----------------------------------------------------------------------------------
    def postprocess(self, classes: list[str], cfg: C) -> Any:
        """The bundle's postprocess (a class of `serving.bundle.tasks.<task>`)."""
        raise NotImplementedError

    def export_plan(
        self,
        meta: dict[str, Any],
        cfg: C,
        model: nn.Module,
        options: ExportOptions,
    ) -> ExportPlan:
        """How a finished stage becomes a bundle; `model` is the stage's fp32 network."""
        raise NotImplementedError

    # -- fine-tuning on feedback ------------------------------------------------------------------
    def feedback_labeller(self, folder: Path, setup: TaskSetup, cfg: C) -> Labeller | None:
        """How to label the records a feedback store holds in `folder` (None: no fine-tuning)."""
        return None

    def check_feedback(self, targets: torch.Tensor, setup: TaskSetup) -> None:
        """Refuse (DataError) feedback targets that cannot join the training set."""

    def fixed_config(self, postprocess: Any) -> dict[str, Any]:
        """The config values a served bundle fixes for fine-tuning it (threshold, Void, points)."""
        return {}
