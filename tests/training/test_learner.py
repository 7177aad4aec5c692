from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from serving.bundle.networks.awd_lstm import AwdLstmSpec, TextClassifier
from serving.bundle.networks.cnn import CnnSpec
from training.callbacks import EVENTS, Callback, CancelFit, Fit
from training.errors import ConfigError
from training.learner import EpochRecord, Learner
from training.models import cnn_layer_groups, create_cnn, layer_groups

from .learners import tiny_learner


class ScheduleRecorder:
    """A reporter that reads the optimizer's live rate and beta1 after every batch."""

    def __init__(self) -> None:
        self.learn: Learner | None = None
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.records: list[EpochRecord] = []

    def fit_begin(self, epochs: int, start_epoch: int, batches: int) -> None:
        pass

    def batch_end(self, loss: torch.Tensor) -> None:
        assert self.learn is not None and loss.ndim == 0 and self.learn.opt is not None
        group = self.learn.opt.param_groups[-1]
        self.lrs.append(group["lr"])
        self.moms.append(group["betas"][0])

    def epoch_end(self, record: EpochRecord) -> None:
        self.records.append(record)

    def fit_end(self) -> None:
        pass


def test_one_cycle_warms_up_then_anneals_with_momentum_mirrored(tag_images: Path, tmp_path: Path) -> None:
    recorder = ScheduleRecorder()
    learn = tiny_learner(tag_images, tmp_path, reporter=recorder)
    recorder.learn = learn
    learn.fit_one_cycle(3, max_lr=1e-2, pct_start=0.3)
    lrs, moms = recorder.lrs, recorder.moms
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1
    assert max(lrs) == pytest.approx(1e-2, rel=0.05)
    assert lrs[0] < 1e-2 / 10 and lrs[-1] < 1e-2 / 1000
    assert all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert moms[peak] == pytest.approx(0.85, abs=0.01)
    assert moms[0] > 0.93 and moms[-1] > 0.93
    assert [r.epoch for r in recorder.records] == [1, 2, 3]


def test_fit_lowers_the_loss_and_reports_every_metric(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    before, _ = learn.validate()
    learn.fit_one_cycle(4, max_lr=3e-2)
    after, metrics = learn.validate()
    assert after < before
    assert set(metrics) == {"accuracy_thresh", "fbeta"}
    assert learn.history[-1].train_loss < learn.history[0].train_loss


def test_freeze_leaves_only_the_head_and_normalization_trainable() -> None:
    model = create_cnn(CnnSpec("resnet18", 5))
    groups = cnn_layer_groups(model)
    learn = _bare_learner(model, groups)
    learn.freeze()
    for name, module in model[0].named_modules():
        for p in module.parameters(recurse=False):
            assert p.requires_grad == isinstance(module, nn.BatchNorm2d), name
    assert all(p.requires_grad for p in model[1].parameters())
    learn.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_to_counts_groups_from_the_end_too() -> None:
    model = create_cnn(CnnSpec("resnet18", 5))
    learn = _bare_learner(model, cnn_layer_groups(model))
    learn.freeze_to(-2)
    conv1, layer3_conv = model[0][0], model[0][6][0].conv1
    assert not conv1.weight.requires_grad and layer3_conv.weight.requires_grad
    assert learn.n_frozen == 1


def test_gradual_unfreezing_thaws_one_text_group_at_a_time_from_the_top() -> None:
    model = TextClassifier(AwdLstmSpec(vocab_size=60, emb=16, hidden=24, layers=3, n_classes=2))
    groups = layer_groups(model)
    assert len(groups) == 4  # embedding + LSTM 1, LSTM 2, LSTM 3, head
    learn = _bare_learner(model, groups)

    def trainable() -> list[bool]:
        return [all(p.requires_grad for p in g.parameters() if p.dim() > 1) for g in groups]

    expected = {-1: [False, False, False, True], -2: [False, False, True, True], 0: [True] * 4}
    for n, thawed in expected.items():
        learn.freeze_to(n)
        assert trainable() == thawed, n
    norms = [m for m in model.head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms and all(p.requires_grad for m in norms for p in m.parameters())


def test_discriminative_rates_are_geometric_across_groups() -> None:
    model = create_cnn(CnnSpec("resnet18", 5))
    learn = _bare_learner(model, cnn_layer_groups(model))
    low, mid, high = learn.lr_range(slice(1e-5, 1e-3))
    assert (low, high) == pytest.approx((1e-5, 1e-3))
    assert mid == pytest.approx(math.sqrt(1e-5 * 1e-3))
    assert learn.lr_range(slice(None, 1e-3)) == pytest.approx([1e-4, 1e-4, 1e-3])
    assert learn.lr_range(3e-3) == [3e-3] * 3
    opt = learn.make_optimizer(learn.lr_range(slice(1e-5, 1e-3)))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([low, mid, high])


def test_progressive_resizing_keeps_the_weights(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path, size=24)
    learn.fit_one_cycle(1, max_lr=1e-2)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    bigger = learn.data.src.transform(size=40).databunch(bs=16, num_workers=0).normalize(learn.data.stats)
    learn.data = bigger
    x, _ = next(iter(bigger.train_dl))
    assert x.shape[-2:] == (40, 40)
    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())
    learn.fit_one_cycle(1, max_lr=1e-3)
    assert learn.history[-1].epoch == 1 and len(learn.history) == 2


def test_save_and_load_round_trip_a_stage(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    learn.fit_one_cycle(1, max_lr=1e-2, stage="stage-1")
    saved = {k: v.clone() for k, v in learn.model.state_dict().items()}
    fresh = tiny_learner(tag_images, tmp_path)
    state = fresh.load("stage-1", with_opt=True)
    assert state["complete"] and state["epoch"] == 1
    assert all(torch.equal(saved[k], v) for k, v in fresh.model.state_dict().items())
    assert fresh.opt is not None and fresh.opt.state


def test_resume_continues_from_the_last_epoch_with_history(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    learn.fit_one_cycle(2, max_lr=1e-2, stage="s")
    resumed = tiny_learner(tag_images, tmp_path)
    resumed.fit_one_cycle(2, max_lr=1e-2, stage="s", resume=True)  # already complete: nothing to do
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert resumed.history[0] == learn.history[0]
    with pytest.raises(ConfigError, match="different fit"):
        tiny_learner(tag_images, tmp_path).fit_one_cycle(3, max_lr=1e-2, stage="s", resume=True)
    with pytest.raises(ConfigError, match="no checkpoint"):
        tiny_learner(tag_images, tmp_path).fit_one_cycle(2, max_lr=1e-2, stage="other", resume=True)


def test_mixed_precision_on_cpu_trains_in_bfloat16(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path, device="cpu").to_fp16()
    assert learn.amp_dtype == torch.bfloat16
    learn.fit(1, lr=1e-2)
    assert math.isfinite(learn.history[-1].train_loss)


def test_a_compiled_channels_last_learner_trains_as_the_eager_one_and_saves_plain_weights(
    tag_images: Path, tmp_path: Path
) -> None:
    eager = tiny_learner(tag_images, tmp_path / "eager")
    eager.fit(1, lr=1e-2)
    # aot_eager: the same capture and autograd split as inductor without its C++ code generation, so
    # this checks the learner's plumbing in seconds (bench/train_throughput.py runs inductor itself)
    fast = tiny_learner(tag_images, tmp_path / "fast").to_channels_last().compile(backend="aot_eager")
    first = next(fast.model.parameters())
    assert first.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(iter(fast.data.train_dl))
    assert x.is_contiguous(memory_format=torch.channels_last)
    fast.fit(1, lr=1e-2, stage="stage-1")
    assert fast.history[-1].train_loss == pytest.approx(eager.history[-1].train_loss, rel=0.05)
    saved = torch.load(tmp_path / "fast" / "stage-1.pt", weights_only=True)["model"]
    assert set(saved) == set(eager.model.state_dict())  # no torch.compile prefix in the checkpoint


def _bare_learner(model: nn.Module, groups: list[nn.Module]) -> Learner:
    """A learner whose data is never touched: enough for freezing and rate arithmetic."""

    class NoData:
        device = torch.device("cpu")

    return Learner(NoData(), model, nn.BCEWithLogitsLoss(), layer_groups=groups)


def test_predict_prepares_images_as_validation_does(tag_images: Path, tmp_path: Path) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    learn.fit(1, lr=1e-2)
    valid_paths = [Path(p) for p in learn.data.src.valid.items[:5]]
    preds, _ = learn.get_preds()
    assert torch.allclose(learn.predict(valid_paths), preds[:5], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda_trains_in_float16_with_loss_scaling(
    tag_images: Path, tmp_path: Path
) -> None:
    learn = tiny_learner(tag_images, tmp_path).to_fp16()
    assert learn.device.type == "cuda" and learn.amp_dtype == torch.float16
    learn.fit_one_cycle(2, max_lr=1e-2, stage="amp")
    assert all(math.isfinite(r.train_loss) for r in learn.history)
    state = torch.load(tmp_path / "amp.pt", weights_only=True)
    assert state["scaler"] and state["scaler"]["scale"] > 0


def test_resume_refuses_a_run_with_another_batch_size_or_other_classes(
    tag_images: Path, tmp_path: Path
) -> None:
    learn = tiny_learner(tag_images, tmp_path)
    learn.meta = {"classes": learn.data.classes}
    learn.fit_one_cycle(1, max_lr=1e-2, stage="s")
    other = tiny_learner(tag_images, tmp_path)
    other.data = other.data.src.databunch(bs=8, num_workers=0).normalize()
    with pytest.raises(ConfigError, match="different fit"):
        other.fit_one_cycle(1, max_lr=1e-2, stage="s", resume=True)
    renamed = tiny_learner(tag_images, tmp_path)
    renamed.meta = {"classes": ["a", "b", "c", "d"]}
    with pytest.raises(ConfigError, match="trained with classes="):
        renamed.fit_one_cycle(1, max_lr=1e-2, stage="s", resume=True)


def event_log(stop_after: int | None = None) -> tuple[Callback, list[str]]:
    """A callback overriding every event, and the list of events it heard; it ends the fit after
    `stop_after` batches if given."""
    heard: list[str] = []

    def hook(event: str) -> Callable[[Callback, Fit], None]:
        def note(self: Callback, fit: Fit) -> None:
            heard.append(event)
            if event == "after_batch" and heard.count(event) == stop_after:
                raise CancelFit

        return note

    return type("EventLog", (Callback,), {event: hook(event) for event in EVENTS})(), heard


def test_callbacks_hear_fastais_events_in_order(tag_images: Path, tmp_path: Path) -> None:
    log, heard = event_log()
    learn = tiny_learner(tag_images, tmp_path).add_cb(log)
    learn.fit(1, lr=1e-2)
    batch = ["before_batch", "after_loss", "after_backward", "after_step", "after_batch"]
    batches = len(learn.data.train_dl)
    assert heard == [
        "before_fit",
        "before_epoch",
        *batch * batches,
        "after_train",
        "after_epoch",
        "after_fit",
    ]


def test_a_callback_can_end_a_fit_and_after_fit_still_runs(tag_images: Path, tmp_path: Path) -> None:
    log, heard = event_log(stop_after=2)
    learn = tiny_learner(tag_images, tmp_path, device="cpu").to_fp16().add_cb(log)
    learn.fit(2, lr=1e-2)
    assert heard.count("after_batch") == 2 and heard[-1] == "after_fit"
    assert learn.history == []  # stopped inside the first epoch: no row
    assert not torch.is_autocast_enabled("cpu")  # mixed precision left nothing behind


def test_fp16_and_compile_are_callbacks_that_the_rate_sweep_runs_through_too(
    tag_images: Path, tmp_path: Path
) -> None:
    learn = tiny_learner(tag_images, tmp_path, device="cpu").to_fp16().compile(backend="eager")
    assert learn.amp_dtype == torch.bfloat16 and learn.compile_backend == "eager"
    learn.to_fp16()  # again: still one mixed-precision callback
    assert sum(type(cb).__name__ == "MixedPrecision" for cb in learn.cbs) == 1
    learn.lr_find(num_it=5, stop_div=False)
    assert learn.trained is not learn.model  # the sweep trained through the compiled module
