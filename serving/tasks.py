"""The typed task API (`servekit.v1.Tasks`): each task in its own words, on the same engine as V2."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from serving.engine import ServedModel
from serving.feedback import Correction, FeedbackError, FeedbackOffError, FeedbackStore, check_correction
from serving.images import encode_mask_png
from serving.metrics import ServerMetrics
from serving.pipeline import Task
from serving.repository import ModelRepository
from serving.status import RequestError, TaskMismatchError, answer
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksServicer

__all__ = ["TaskService"]

Response = TypeVar("Response")

_CALL_FOR_TASK = {
    "multilabel": "Classify",
    "segmentation": "Segment",
    "pose": "Pose",
    "sentiment": "Sentiment",
}


class TaskService(TasksServicer):
    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServerMetrics,
        feedback: FeedbackStore | None = None,
        max_feedback_bytes: int = 16 << 20,
    ) -> None:
        self.repository, self.metrics = repository, metrics
        self.feedback, self.max_feedback_bytes = feedback, max_feedback_bytes

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassifyResponse:
        def respond(model: ServedModel, answers: list[dict[str, Any]]) -> pb.ClassifyResponse:
            labels = model.bundle.manifest.labels
            return pb.ClassifyResponse(
                model=_ref(model),
                results=[
                    pb.Classification(
                        labels=a["labels"],
                        scores=[pb.LabelScore(label=label, score=a["scores"][label]) for label in labels],
                    )
                    for a in answers
                ],
            )

        return await self._images(request.model, request.images, "multilabel", respond, context)

    async def Segment(
        self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SegmentResponse:
        def respond(model: ServedModel, answers: list[dict[str, Any]]) -> pb.SegmentResponse:
            return pb.SegmentResponse(
                model=_ref(model),
                results=[
                    pb.Segmentation(
                        mask_png=encode_mask_png(a["mask"]),
                        width=a["mask"].shape[1],
                        height=a["mask"].shape[0],
                    )
                    for a in answers
                ],
                classes=[pb.SegmentClass(id=i, name=n) for i, n in enumerate(model.bundle.manifest.labels)],
            )

        return await self._images(request.model, request.images, "segmentation", respond, context)

    async def Pose(self, request: pb.PoseRequest, context: grpc.aio.ServicerContext) -> pb.PoseResponse:
        def respond(model: ServedModel, answers: list[dict[str, Any]]) -> pb.PoseResponse:
            return pb.PoseResponse(
                model=_ref(model),
                results=[pb.PoseResult(points=[pb.Point(**point) for point in a["points"]]) for a in answers],
            )

        return await self._images(request.model, request.images, "pose", respond, context)

    async def Sentiment(
        self, request: pb.SentimentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SentimentResponse:
        async def run(model: ServedModel) -> pb.SentimentResponse:
            if model.task != "sentiment":
                raise _mismatch(model, "sentiment")
            if not request.texts:
                raise RequestError("no texts: send at least one UTF-8 text")
            model.admit(len(request.texts))
            prepared = await model.prepare_texts(list(request.texts))
            outputs = await model.infer(prepared, context.time_remaining())
            labels = model.bundle.manifest.labels
            return pb.SentimentResponse(
                model=_ref(model),
                results=[
                    pb.SentimentResult(
                        label=a["label"],
                        probability=a["scores"][a["label"]],
                        probabilities=[
                            pb.LabelScore(label=label, score=a["scores"][label]) for label in labels
                        ],
                    )
                    for a in model.postprocess(outputs, [])
                ],
            )

        return await answer(
            self.repository, self.metrics, context, request.model.name, request.model.version, run
        )

    async def Feedback(
        self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.FeedbackResponse:
        async def record(model: ServedModel) -> pb.FeedbackResponse:
            if self.feedback is None:
                raise FeedbackOffError(
                    "this server keeps no feedback store; start it with feedback.dir (SERVE_FEEDBACK__DIR)"
                )
            if model.task == "sentiment":
                raise TaskMismatchError(
                    f"model {model.name!r} answers sentiment; feedback is stored for image models only"
                )
            if request.WhichOneof("item") == "text":
                raise FeedbackError(f"model {model.name!r} answers {model.task}; send the image, not text")
            correction = Correction(
                request.image,
                list(request.labels),
                request.mask_png,
                [(p.name, p.x, p.y) for p in request.points],
            )
            loop = asyncio.get_running_loop()  # decoding and fsync are blocking work: off the event loop
            record_id, count = await loop.run_in_executor(model.decode_pool, self._store, model, correction)
            return pb.FeedbackResponse(record_id=record_id, records=count)

        return await answer(
            self.repository, self.metrics, context, request.model.name, request.model.version, record
        )

    def _store(self, model: ServedModel, correction: Correction) -> tuple[str, int]:
        assert self.feedback is not None
        manifest = model.bundle.manifest
        checked = check_correction(correction, manifest, model.max_image_pixels, self.max_feedback_bytes)
        return self.feedback.add(manifest, checked)

    async def _images(
        self,
        ref: pb.ModelRef,
        images: Sequence[bytes],
        task: Task,
        respond: Callable[[ServedModel, list[dict[str, Any]]], Response],
        context: grpc.aio.ServicerContext,
    ) -> Response:
        async def run(model: ServedModel) -> Response:
            if model.task != task:
                raise _mismatch(model, task)
            if not images:
                raise RequestError("no images: send at least one encoded image")
            model.admit(len(images))
            prepared, sizes = await model.prepare_images(images)
            outputs = await model.infer(prepared, context.time_remaining())
            return respond(model, model.postprocess(outputs, sizes))

        return await answer(self.repository, self.metrics, context, ref.name, ref.version, run)


def _ref(model: ServedModel) -> pb.ModelRef:
    return pb.ModelRef(name=model.name, version=str(model.version))


def _mismatch(model: ServedModel, task: str) -> TaskMismatchError:
    return TaskMismatchError(
        f"model {model.name!r} answers {model.task}, not {task}; call {_CALL_FOR_TASK[model.task]}"
    )
