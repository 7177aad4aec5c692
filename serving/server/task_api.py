"""The typed task API (`servekit.v1.Tasks`): each task in its own words, on the same engine as V2.

Each call is answered by the models whose task's codec names it (`TaskCodec.call`): `Classify` by
multi-label and single-label image models, `Segment`, `Pose`, `Sentiment` by theirs. The task's
codec builds the response; this servicer only admits, prepares, infers and maps errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf.message import Message

from serving.bundle.tasks import TASKS
from serving.server.codecs import CODECS
from serving.server.error_status import RequestError, TaskMismatchError, answer
from serving.server.feedback_store import Correction, FeedbackError, FeedbackOffError, FeedbackStore
from serving.server.prometheus import ServerMetrics
from serving.server.repository import ModelRepository
from serving.server.served_model import ServedModel
from serving.server.statistics import stage
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksServicer

__all__ = ["TaskService"]


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

    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> Message:
        return await self._call("Classify", request.model, request.images, context)

    async def Segment(self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext) -> Message:
        return await self._call("Segment", request.model, request.images, context)

    async def Pose(self, request: pb.PoseRequest, context: grpc.aio.ServicerContext) -> Message:
        return await self._call("Pose", request.model, request.images, context)

    async def Sentiment(self, request: pb.SentimentRequest, context: grpc.aio.ServicerContext) -> Message:
        return await self._call("Sentiment", request.model, request.texts, context)

    async def Feedback(
        self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.FeedbackResponse:
        async def record(model: ServedModel) -> pb.FeedbackResponse:
            if self.feedback is None:
                raise FeedbackOffError(
                    "this server keeps no feedback store; start it with feedback.dir (SERVE_FEEDBACK__DIR)"
                )
            task = model.bundle.task
            if task.feedback is None:
                raise TaskMismatchError(
                    f"model {model.name!r} answers {task.name}; feedback is stored for "
                    f"{', '.join(t.name for t in TASKS.values() if t.feedback)} models only"
                )
            if request.WhichOneof("item") == "text":
                raise FeedbackError(f"model {model.name!r} answers {task.name}; send the image, not text")
            correction = Correction(
                request.image,
                list(request.labels),
                request.mask_png,
                [(p.name, p.x, p.y) for p in request.points],
            )
            # the image decodes in the decode pool's turns, held in the memory budget as an inference item
            record_id, count = await self.feedback.add_served(model, correction, self.max_feedback_bytes)
            return pb.FeedbackResponse(record_id=record_id, records=count)

        return await answer(
            self.repository, self.metrics, context, request.model.name, request.model.version, record
        )

    async def _call(
        self,
        call: str,
        ref: pb.ModelRef,
        items: Sequence[bytes] | Sequence[str],
        context: grpc.aio.ServicerContext,
    ) -> Message:
        async def run(model: ServedModel) -> Message:
            codec = model.codec
            if codec.call != call:
                wanted = " or ".join(c.name for c in CODECS.values() if c.call == call)
                raise TaskMismatchError(
                    f"model {model.name!r} answers {codec.name}, not {wanted}; call {codec.call}"
                )
            if not items:
                raise RequestError(f"no {model.preprocess.takes}: send at least one")
            model.admit(len(items), sum(len(item) for item in items))
            prepared, sizes = await model.prepare(items)
            outputs = await model.infer(prepared, context.time_remaining())
            with stage("compute_output"):
                response = codec.typed_response(model.bundle.manifest, model.postprocess(outputs, sizes))
            response.model.CopyFrom(pb.ModelRef(name=model.name, version=str(model.version)))
            return response

        return await answer(self.repository, self.metrics, context, ref.name, ref.version, run)
