"""A served model described as Triton's `ModelConfig`, and its statistics as Triton's `ModelStatistics`.

Everything comes from what the bundle and the batcher already know, so tools that size their load
from the configuration (perf_analyzer, Model Analyzer, client libraries) see what the server does:
the batch limit and queue delay it batches with, the tensors it takes and answers, one instance.
"""

from __future__ import annotations

from serving.bundle.runtimes import buckets
from serving.server.codecs import OutputTensor
from serving.server.served_model import ServedModel
from serving.server.statistics import Duration
from serving.server.v2_outputs import PIXELS, input_tensors, output_tensors
from serving.wire import inference_pb2 as pb
from serving.wire import model_config_pb2 as mc

__all__ = ["BACKEND", "model_config", "model_statistics", "platform"]

BACKEND = "serve-kit"
# V2 datatype names → a model configuration's (BYTES is TYPE_STRING there)
_TYPES = {"BYTES": "TYPE_STRING", "BOOL": "TYPE_BOOL"}


def platform(model: ServedModel) -> str:
    return f"{BACKEND}_{model.runtime.name}"


def model_config(model: ServedModel, pinned: bool) -> mc.ModelConfig:
    """Dimensions leave out the batch axis (max_batch_size > 0, as Triton writes them); a BYTES
    tensor holds one element per item. Preferred batch sizes are the CUDA graph buckets, if any."""
    batching = model.batcher.config
    policy = (
        mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[model.version]))
        if pinned
        else mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1))
    )
    preferred = buckets(batching.max_batch_size) if model.graphs != "off" else []
    on_gpu = model.device == "cuda"
    return mc.ModelConfig(
        name=model.name,
        platform=platform(model),
        backend=BACKEND,
        version_policy=policy,
        max_batch_size=batching.max_batch_size,
        input=[
            mc.ModelInput(
                name=t.name,
                data_type=_data_type(t),
                dims=_dims(t),
                format=mc.ModelInput.FORMAT_NCHW if t.name == PIXELS else mc.ModelInput.FORMAT_NONE,
                optional=len(input_tensors(model)) > 1,  # images or pixels: one of them per request
            )
            for t in input_tensors(model)
        ],
        output=[
            mc.ModelOutput(name=t.name, data_type=_data_type(t), dims=_dims(t)) for t in output_tensors(model)
        ],
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=preferred, max_queue_delay_microseconds=batching.max_queue_delay_us
        ),
        instance_group=[
            mc.ModelInstanceGroup(
                name=model.name,
                kind=mc.ModelInstanceGroup.KIND_GPU if on_gpu else mc.ModelInstanceGroup.KIND_CPU,
                count=1,
                gpus=[0] if on_gpu else [],
            )
        ],
        parameters={
            "task": mc.ModelParameter(string_value=model.task),
            "runtime": mc.ModelParameter(string_value=model.runtime.describe()),
            "max_queue_size": mc.ModelParameter(string_value=str(batching.max_queue_size)),
            "labels": mc.ModelParameter(string_value=" ".join(model.bundle.manifest.labels)),
        },
    )


def _data_type(tensor: OutputTensor) -> str:
    return _TYPES.get(tensor.datatype, f"TYPE_{tensor.datatype}")


def _dims(tensor: OutputTensor) -> list[int]:
    return list(tensor.shape[1:]) or [1]


def model_statistics(model: ServedModel) -> pb.ModelStatistics:
    stats = model.metrics.stats

    def duration(d: Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=d.count, ns=d.ns)

    return pb.ModelStatistics(
        name=model.name,
        version=str(model.version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=duration(stats.success),
            fail=duration(stats.fail),
            queue=duration(stats.queue),
            compute_input=duration(stats.compute_input),
            compute_infer=duration(stats.compute_infer),
            compute_output=duration(stats.compute_output),
        ),
        batch_stats=[
            pb.InferBatchStatistics(batch_size=size, compute_infer=duration(ran))
            for size, ran in sorted(dict(stats.batches).items())
        ],
    )
