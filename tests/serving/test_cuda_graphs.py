"""CUDA graphs per batch-size bucket: the buckets, and (on a GPU) answers equal to eager ones."""

from __future__ import annotations

import pytest
import torch

from serving.bundle.cuda_graphs import GraphedForward, buckets
from serving.bundle.networks.cnn import CnnSpec, build_cnn
from serving.bundle.pipeline import Network
from serving.bundle.torch_runtime import TorchRuntime


@pytest.mark.parametrize(
    ("largest", "expected"),
    [(1, [1]), (2, [1, 2]), (32, [1, 2, 4, 8, 16, 32]), (48, [1, 2, 4, 8, 16, 32, 48])],
)
def test_buckets_are_powers_of_two_up_to_the_largest_batch(largest: int, expected: list[int]) -> None:
    assert buckets(largest) == expected


def tiny_network() -> Network:
    torch.manual_seed(0)
    return Network.from_module(CnnSpec("resnet18", 5), build_cnn(CnnSpec("resnet18", 5)).eval())


def test_on_the_cpu_the_torch_runtime_runs_eagerly_whatever_was_asked() -> None:
    runtime = TorchRuntime(tiny_network(), "cpu", graphs="capture")
    assert runtime.graphs == "off" and runtime.forward is runtime.model
    assert "CUDA graphs" not in runtime.describe()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replayed_graphs_answer_as_the_eager_network_for_every_batch_size() -> None:
    network = tiny_network()
    eager, graphed = TorchRuntime(network, "cuda"), TorchRuntime(network, "cuda", "capture", max_batch=8)
    assert isinstance(graphed.forward, GraphedForward) and "CUDA graphs by capture" in graphed.describe()
    for count in (1, 3, 8, 9, 3):  # 3 pads to 4; 9 is over every bucket (eager); 3 again replays
        batch = torch.randn(count, 3, 40, 40).numpy()
        torch.testing.assert_close(graphed.run(batch), eager.run(batch), atol=2e-3, rtol=2e-3)
    assert sorted(shape[0] for shape in graphed.forward.graphs) == [1, 4, 8]
