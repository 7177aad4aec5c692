"""The KServe V2 protocol over HTTP/REST, Triton's routes and extensions, on its own port beside gRPC.

A thin adaptor like the gRPC servicer (`serving/server/v2.py`): each route decodes its request
(`v2_http_codec`), calls the shared `V2Engine` and encodes the answer as Triton's HTTP server does.
Every failure is answered `{"error": message}`, with the HTTP status that `HTTP_STATUS` (the one
table) maps its gRPC code to: the engine's `CallError`s, and a refused request body (a `RequestError`:
400); an unknown route is 404, a wrong method 405, a body over `max_message_mb` 413. Nothing a client
sends escapes a handler. Health answers are Triton's: 200 for yes, 400 for no.

It shares the event loop with gRPC, so nothing heavy runs on it: compressed bodies inflate in a thread,
capped (`http_bodies`); big JSON is parsed and written in a worker process (`json_offload`); its
connections are capped and timed, malformed HTTP is answered in JSON (`http_connection`); and a
request whose client went away is cancelled with the work it queued.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web
from aiohttp.typedefs import Handler

from serving.bundle.quoting import clip, shown
from serving.server import loop_errors
from serving.server.error_status import CallError, RequestError, refusals, status_for
from serving.server.http_bodies import BodyReader, compress_answer
from serving.server.http_connection import ConnectionLimits, Connections
from serving.server.json_offload import JsonOffload
from serving.server.v2_engine import V2Engine
from serving.server.v2_http_codec import HEADER_LENGTH, index_json, json_object, message_json

__all__ = ["HTTP_STATUS", "HttpFrontEnd"]

# Triton's mapping where it has the code (its HttpCodeFromError); serve-kit's own codes where it has none.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Triton's routes for shared memory, tracing, logging and generation, which serve-kit does not implement
NOT_IMPLEMENTED = [
    "/v2/systemsharedmemory{tail:.*}",
    "/v2/cudasharedmemory{tail:.*}",
    "/v2/trace/setting",
    "/v2/models/{name}/trace/setting",
    "/v2/logging",
    "/v2/models/{name}/generate{tail:.*}",
]
NO = 400  # Triton's answer to "live?", "ready?" and "model ready?" when it is no


class HttpFrontEnd:
    def __init__(
        self,
        engine: V2Engine,
        max_body_bytes: int,
        limits: ConnectionLimits | None = None,
        body_timeout_s: float = 60.0,
    ) -> None:
        self.engine, self.max_body_bytes = engine, max_body_bytes
        self.limits = limits or ConnectionLimits()
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[_json_errors])
        self.app.add_routes(self._routes())
        self._body_pool = ThreadPoolExecutor(2, thread_name_prefix="http-body")
        self.bodies = BodyReader(max_body_bytes, body_timeout_s, self._body_pool)
        self.json = JsonOffload()
        self._runner: web.AppRunner | None = None
        self._connections: Connections | None = None
        self._listener: asyncio.Server | None = None

    def _routes(self) -> list[web.RouteDef]:
        routes = [
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get("/v2/models/stats", self.model_statistics),  # before /v2/models/{name}
        ]
        for model in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [
                web.get(model, self.model_metadata),
                web.get(f"{model}/ready", self.model_ready),
                web.get(f"{model}/config", self.model_config),
                web.get(f"{model}/stats", self.model_statistics),
                web.post(f"{model}/infer", self.infer),
            ]
        for repository in ("/v2/repository", "/v2/repository/{repository}"):
            routes += [
                web.post(f"{repository}/index", self.repository_index),
                web.post(f"{repository}/models/{{name}}/load", self.load),
                web.post(f"{repository}/models/{{name}}/unload", self.unload),
            ]
        return routes + [web.route("*", path, self.not_implemented) for path in NOT_IMPLEMENTED]

    async def not_implemented(self, request: web.Request) -> web.Response:
        """Triton's routes of extensions serve-kit lacks: 501, saying so, never a bare 404."""
        extensions = ", ".join(self.engine.server_metadata().extensions)
        return _error(
            501, f"serve-kit does not implement {clip(request.path, 200)}; its extensions are {extensions}"
        )

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen on `host`:`port` (0: any free port), shared with other processes when `reuse_port`;
        the port bound."""
        loop = asyncio.get_running_loop()
        loop_errors.install(loop)  # a failing accept() is a throttled JSON line, not a traceback flood
        # handler_cancellation: a client that hangs up cancels its request, and the work it queued
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        assert self._runner.server is not None  # set up just now
        self._connections = Connections(self._runner.server, self.limits)
        self._listener = await loop.create_server(
            self._connections, host, port, reuse_port=reuse_port or None
        )
        return int(self._listener.sockets[0].getsockname()[1])

    def drain(self) -> None:
        """The pre-stop period begins: every answer says `Connection: close`, and keep-alive
        connections close once quiet, so no client sends a request on a connection about to be cut."""
        if self._connections is not None:
            self._connections.drain()

    async def stop(self, grace: float) -> None:
        """As gRPC stops: no new connections or requests; those accepted finish within `grace` seconds."""
        runner = self._runner
        if runner is None:
            return
        if self._listener is not None:
            self._listener.close()
        await asyncio.sleep(0)  # requests that arrived before the listener closed have started
        if self._connections is not None:
            await self._connections.close(grace)
        await runner.cleanup()
        await self.json.close()
        self._body_pool.shutdown(wait=False, cancel_futures=True)

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.engine.live() else NO)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.engine.ready() else NO)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(message_json(self.engine.server_metadata()))

    async def model_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(message_json(self.engine.model_metadata(*_model(request))))

    async def model_ready(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        if self.engine.model_ready(name, version):
            return web.Response()
        which = f"model {shown(name)}" + (f" version {shown(version)}" if version else "")
        return _error(NO, f"{which} is not ready")

    async def model_config(self, request: web.Request) -> web.Response:
        return web.json_response(message_json(self.engine.model_config(*_model(request)).config))

    async def model_statistics(self, request: web.Request) -> web.Response:
        """One model (and version), or every served one (/v2/models/stats)."""
        return web.json_response(message_json(self.engine.model_statistics(*_model(request))))

    async def repository_index(self, request: web.Request) -> web.Response:
        fields = await self._json_body(request)
        ready = fields.get("ready", False)
        if not isinstance(ready, bool):
            raise RequestError(f"'ready' must be true or false, got {shown(ready)}")
        index = self.engine.repository_index(request.match_info.get("repository", ""), ready)
        return web.json_response(index_json(index))

    async def load(self, request: web.Request) -> web.Response:
        parameters = (await self._json_body(request)).get("parameters", {})
        if not isinstance(parameters, dict):
            raise RequestError(f"'parameters' must be a JSON object, got {shown(parameters)}")
        repository, name = request.match_info.get("repository", ""), request.match_info["name"]
        # shielded: a client that hangs up does not stop a load half way (an inference it does stop)
        await asyncio.shield(self.engine.load(repository, name, parameters))
        return web.Response(content_type="application/json")

    async def unload(self, request: web.Request) -> web.Response:
        """The body (Triton's `unload_dependents`) is read and ignored: no model depends on another."""
        await self._json_body(request)
        await asyncio.shield(
            self.engine.unload(request.match_info.get("repository", ""), request.match_info["name"])
        )
        return web.Response(content_type="application/json")

    async def infer(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        body = await self.bodies.read(request)
        header_length_field = request.headers.get(HEADER_LENGTH)
        infer_request, output_format = await self.json.parse_infer(body, header_length_field, name, version)
        answer = await self.engine.infer(infer_request, time_remaining=None)
        content, header_length = await self.json.encode_infer(answer, output_format)
        if header_length is None:
            response = web.Response(body=content, content_type="application/json")
        else:
            response = web.Response(body=content, content_type="application/octet-stream")
            response.headers[HEADER_LENGTH] = str(header_length)
        if compress_answer(len(content), request.headers.get("Accept-Encoding", "")):
            response.enable_compression()  # only where the request's Accept-Encoding asks for it
        return response

    async def _json_body(self, request: web.Request) -> dict[str, object]:
        """An optional JSON object (an empty body is `{}`)."""
        body = await self.bodies.read(request)
        return json_object(body, "the request body") if body.strip() else {}


def _model(request: web.Request) -> tuple[str, str]:
    return request.match_info.get("name", ""), request.match_info.get("version", "")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as `{"error": message}` with its HTTP status."""
    try:
        return await handler(request)
    except CallError as err:  # the engine's refusal, already logged there
        return _error(HTTP_STATUS.get(err.code, 500), err.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        path = clip(request.path, 200)
        if isinstance(err, web.HTTPMethodNotAllowed):
            allowed = " or ".join(sorted(err.allowed_methods))
            return _error(err.status, f"{request.method} is not allowed on {path}; use {allowed}")
        if isinstance(err, web.HTTPNotFound):
            return _error(err.status, f"no route {request.method} {path}; KServe V2 routes start with /v2/")
        response = _error(err.status, err.text or err.reason)
        if (
            err.keep_alive is False
        ):  # a body left unread (408, 413): the connection cannot carry another request
            response.force_close()
        return response
    except ConnectionError:
        raise  # the client went away; aiohttp closes the connection
    except Exception as err:  # a refused request body; or a bug, logged by status_for
        code, message = status_for(err)
        if code != grpc.StatusCode.INTERNAL:
            refusals.log(code, request.match_info.get("name", ""), message)
        return _error(HTTP_STATUS.get(code, 500), message)
