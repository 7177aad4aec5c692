"""The same learner under torchrun: 2 CPU processes with gloo train one model as a single process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from serving.bundle import load_bundle
from training.checkpoint import load_checkpoint
from training.export import export_stage


def test_two_gloo_ranks_train_export_and_match_a_single_process(
    tag_images: Path, trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "training", "train", "multilabel", "--data", str(tag_images), "--arch", "resnet18",
        "--no-pretrained", "--size", "32", "--bs", "8", "--epochs", "2", "--lr", "1e-3", "--num-workers", "0",
        "--out", str(out),
    ]  # fmt: skip  # 2 ranks × bs 8: the single run's global batch of 16
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"checkpoint"') == 1  # rank 0 alone reports

    state = load_checkpoint(out / "stage-1.pt")
    assert state["complete"] and state["epoch"] == 2
    assert not any(key.startswith("module.") for key in state["model"])  # the bare model, not DDP's wrapper
    single = json.loads((trained_run / "stage-1.metrics.json").read_text())["metrics"]
    ddp = json.loads((out / "stage-1.metrics.json").read_text())
    assert ddp["epochs"] == 2 and set(ddp["metrics"]) == set(single)
    for name, value in single.items():  # within noise of the single-process run on the same data
        assert abs(ddp["metrics"][name] - value) < 0.15, (name, ddp["metrics"][name], value)

    bundle = export_stage(out, "stage-1", "tags", tmp_path / "models", parity_items=8)
    assert load_bundle(bundle).manifest.parity.agreement >= 0.995
