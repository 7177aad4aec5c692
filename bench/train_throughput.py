"""Images/s of `Learner.fit` (eager, channels_last, torch.compile, batch transforms) against a bare
eager PyTorch loop.

Every side trains the same model from the same initial weights on the same data, batch size and
threads, for one epoch plus one pass over the validation set (what any loop does per epoch),
alternating, `--runs` times; medians and ranges are compared. The compiled learner is compiled
once beforehand (its compile time is reported, not counted), as a run of many epochs pays it once.
Each side's last training loss is reported: a speed-up must reach the same loss. Prints one JSON
line per architecture and size. Targets: eager ratio >= 0.95; every speed-up at once
(`learner_all`) >= 1.25.

    python bench/train_throughput.py [--runs 5] [--n-train 512] [--archs efficientnet_lite0,resnet18] \
        [--sizes 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from serving.bundle.networks.cnn import CnnSpec
from training.data import DataBunch, FileListSplitter, ItemList, TagsFromColumn, get_transforms
from training.data.batch_transforms import BatchAugment
from training.demo.scenes import build_multilabel_scenes
from training.learner import Learner
from training.models import cnn_layer_groups, create_cnn

LR = 1e-3


def bare_epoch(model: nn.Module, data: DataBunch) -> float:
    """The loop a practitioner writes by hand: no schedule, no metrics, no callbacks."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-2, betas=(0.9, 0.99))
    loss_func = nn.BCEWithLogitsLoss()
    model.train()
    total, count = 0.0, 0
    for x, y in data.train_dl:
        loss = loss_func(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        total, count = total + float(loss.detach()) * len(x), count + len(x)
    model.eval()
    with torch.inference_mode():
        for x, y in data.valid_dl:
            loss_func(model(x), y)
    return total / count


def scenes(n_train: int, n_valid: int, size: int, bs: int, root: Path) -> tuple[DataBunch, DataBunch]:
    """The same scenes twice: augmented per item in the loader, and per batch (`BatchAugment`)."""
    build_multilabel_scenes(root, n_train=n_train, n_valid=n_valid, seed=0)
    src = (
        ItemList.from_csv(root, "labels.csv", folder="train", suffix=".jpg")
        .split(FileListSplitter.from_file(root / "valid.txt"))
        .label(TagsFromColumn())
    )
    per_item = src.transform(get_transforms(), size=size).databunch(bs=bs, num_workers=0).normalize()
    per_batch = src.transform(
        get_transforms(max_warp=0, do_flip=False, max_rotate=0, max_zoom=1, max_lighting=0), size=size
    )
    batched = per_batch.databunch(bs=bs, num_workers=0).normalize(per_item.stats)
    batched.train_dl.batch_tfm = BatchAugment()
    return per_item, batched


def measure(arch: str, size: int, args: argparse.Namespace, root: Path) -> dict[str, object]:
    data, batched = scenes(args.n_train, args.n_valid, size, args.bs, root)
    torch.manual_seed(0)
    initial = create_cnn(CnnSpec(arch, len(data.classes)))
    images = len(data.train_dl) * args.bs + len(data.valid_dl.dl.dataset)  # type: ignore[arg-type]

    def batches_in(channels_last: bool) -> None:
        """The shared loaders' batch layout, set before each side runs."""
        for dl in data.loaders():
            dl.channels_last = channels_last

    def learner(channels_last: bool = False, compiled: bool = False) -> Learner:
        model = copy.deepcopy(initial)
        learn = Learner(data, model, nn.BCEWithLogitsLoss(), layer_groups=cnn_layer_groups(model))
        if channels_last:
            learn.to_channels_last()
        if compiled:
            learn.compile()
        return learn

    def fit(learn: Learner, channels_last: bool = False) -> float:
        batches_in(channels_last)
        learn.fit(1, lr=LR)
        return learn.history[-1].train_loss

    def bare() -> float:
        batches_in(False)
        return bare_epoch(copy.deepcopy(initial), data)

    compiled = learner(channels_last=True, compiled=True)
    began = time.perf_counter()
    fit(compiled, channels_last=True)  # compiles forward and backward once, as a long run's first epoch
    compile_s = time.perf_counter() - began
    model = copy.deepcopy(initial)
    fastest = Learner(batched, model, nn.BCEWithLogitsLoss(), layer_groups=cnn_layer_groups(model))
    fastest.to_channels_last().compile()  # every speed-up at once: batch transforms too
    fastest.fit(1, lr=LR)

    def again(learn: Learner, channels_last: bool) -> float:
        """The compiled learner once more from the initial weights (compiled already)."""
        learn.model.load_state_dict(initial.state_dict())
        learn.history.clear()
        return fit(learn, channels_last=channels_last)

    sides: dict[str, Callable[[], float]] = {
        "bare_loop": bare,
        "learner": lambda: fit(learner()),
        "learner_channels_last": lambda: fit(learner(channels_last=True), channels_last=True),
        "learner_compiled": lambda: again(compiled, True),
        "learner_batch_tfms": lambda: fit(Learner(batched, copy.deepcopy(initial), nn.BCEWithLogitsLoss())),
        "learner_all": lambda: again(fastest, False),
    }
    sides["bare_loop"]()  # warm-up: allocator, thread pools, page cache
    rates: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    losses: dict[str, float] = {}
    for _ in range(args.runs):
        for name, run in sides.items():  # alternated: drift in the machine's load hits every side
            began, cpu_began = time.perf_counter(), time.process_time()
            losses[name] = run()
            rates[name].append(images / (time.perf_counter() - began))
            cpu[name].append((time.process_time() - cpu_began) / images * 1000)
    baseline = statistics.median(rates["bare_loop"])
    return {
        "bench": "train_throughput",
        "arch": arch,
        "size": size,
        "bs": args.bs,
        "threads": torch.get_num_threads(),
        "images_per_epoch": images,
        "runs": args.runs,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "compile_s": round(compile_s, 1),
        **{f"{name}_images_per_s": round(statistics.median(r), 2) for name, r in rates.items()},
        **{
            f"{name}_ratio": round(statistics.median(r) / baseline, 3)
            for name, r in rates.items()
            if name != "bare_loop"
        },
        "ranges_images_per_s": {name: [round(min(r), 2), round(max(r), 2)] for name, r in rates.items()},
        "cpu_ms_per_image": {name: round(statistics.median(c), 2) for name, c in cpu.items()},
        "last_train_loss": {name: round(loss, 4) for name, loss in losses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-valid", type=int, default=64)
    parser.add_argument("--archs", default="efficientnet_lite0,resnet18")
    parser.add_argument("--sizes", default="64")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads, every side"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for arch in args.archs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                print(json.dumps(measure(arch, size, args, Path(tmp) / "scenes")), flush=True)


if __name__ == "__main__":
    main()
