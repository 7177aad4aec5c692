"""Images/s of `Learner.fit` against a bare hand-written PyTorch loop: same model, data, batch size.

Both do one epoch of training plus one pass over the validation set (what any training loop
does per epoch), from the same initial weights, alternating, several times; medians are compared.
Prints one JSON line. Target: ratio >= 0.95.

    python bench/train_throughput.py [--runs 5] [--n-train 512] [--arch resnet18] [--size 64] [--bs 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from serving.bundle.networks.cnn import CnnSpec
from training.data import DataBunch, FileListSplitter, ItemList, TagsFromColumn, get_transforms
from training.demo.scenes import build_multilabel_scenes
from training.learner import Learner
from training.models import cnn_layer_groups, create_cnn


def bare_epoch(model: nn.Module, data: DataBunch, lr: float) -> None:
    """The loop a practitioner writes by hand: no schedule, no metrics, no callbacks."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2, betas=(0.9, 0.99))
    loss_func = nn.BCEWithLogitsLoss()
    model.train()
    for x, y in data.train_dl:
        loss = loss_func(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    with torch.inference_mode():
        for x, y in data.valid_dl:
            loss_func(model(x), y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-valid", type=int, default=64)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--bs", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "scenes"
        build_multilabel_scenes(root, n_train=args.n_train, n_valid=args.n_valid, seed=0)
        src = (
            ItemList.from_csv(root, "labels.csv", folder="train", suffix=".jpg")
            .split(FileListSplitter.from_file(root / "valid.txt"))
            .label(TagsFromColumn())
        )
        data = src.transform(get_transforms(), size=args.size).databunch(bs=args.bs).normalize()
        torch.manual_seed(0)
        initial = create_cnn(CnnSpec(args.arch, len(src.classes)))
        images = len(data.train_dl) * args.bs + len(src.valid)

        def timed_learner() -> float:
            model = copy.deepcopy(initial)
            learn = Learner(data, model, nn.BCEWithLogitsLoss(), layer_groups=cnn_layer_groups(model))
            began = time.perf_counter()
            learn.fit(1, lr=1e-3)
            return images / (time.perf_counter() - began)

        def timed_bare() -> float:
            model = copy.deepcopy(initial)
            began = time.perf_counter()
            bare_epoch(model, data, lr=1e-3)
            return images / (time.perf_counter() - began)

        timed_bare()  # warm-up: allocator, thread pools, page cache
        learner_runs, bare_runs = [], []
        for _ in range(args.runs):
            learner_runs.append(timed_learner())
            bare_runs.append(timed_bare())

    learner, bare = statistics.median(learner_runs), statistics.median(bare_runs)
    print(json.dumps({
        "bench": "train_throughput",
        "arch": args.arch, "size": args.size, "bs": args.bs, "images_per_epoch": images, "runs": args.runs,
        "learner_images_per_s": round(learner, 2), "bare_loop_images_per_s": round(bare, 2),
        "ratio": round(learner / bare, 3),
        "learner_runs": [round(r, 2) for r in learner_runs], "bare_runs": [round(r, 2) for r in bare_runs],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
