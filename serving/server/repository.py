"""The model repository: every bundle under `models/`, loaded, served, and swapped when a new one lands.

Each model serves one version: the newest integer folder under `models/<name>/`, or the one its
settings pin. A scan (at start, then every `poll_interval_s`) loads a new version beside the old,
warms it up, swaps it in atomically and stops the old one once its in-flight requests are answered.
A bundle that fails to load is reported and retried only when its folder changes; the version
already serving (if any) goes on serving. So does it when a new version would change what clients
rely on (task, labels, input): clients of a multi-label `planet` would read a classifier's answers as
nothing at all, so such a version is refused unless `allow_incompatible_swaps` says otherwise.

What a client reads never shows where the repository lies on disk: paths in load errors are
relative to it, and a model name a client sends is checked before it touches the file system.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from serving.bundle import BundleError, Manifest, is_version, load_bundle, read_manifest
from serving.bundle.quoting import shown
from serving.bundle.runtimes import Device, cuda_available
from serving.server.decode_turns import DecodeTurns
from serving.server.malloc import release_free_memory
from serving.server.memory import MemoryBudget
from serving.server.prometheus import ServerMetrics
from serving.server.served_model import ServedModel
from serving.server.settings import ServerSettings

__all__ = [
    "DrainingError",
    "IndexEntry",
    "InvalidModelNameError",
    "ModelControlError",
    "ModelLoadingError",
    "ModelNotFoundError",
    "ModelRepository",
    "ModelState",
]

log = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "unloaded"]

MAX_NAME_BYTES = 255  # one path component on Linux and macOS: a longer name can be no model folder


class InvalidModelNameError(ValueError):
    """A name that cannot be a model folder: empty, too long or path-like (gRPC: INVALID_ARGUMENT)."""


class ModelNotFoundError(LookupError):
    """No such model or version in the repository (gRPC: NOT_FOUND)."""


class ModelLoadFailedError(RuntimeError):
    """A version could not be loaded; the message says why (the repository records it)."""


class ModelLoadingError(RuntimeError):
    """The model exists but cannot answer yet, or failed to load (gRPC: UNAVAILABLE)."""


class DrainingError(RuntimeError):
    """The server is shutting down and takes no new requests (gRPC: UNAVAILABLE)."""


class ModelControlError(RuntimeError):
    """A load or unload the model control mode does not allow (gRPC: FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class IndexEntry:
    """One model of the repository as Triton's RepositoryIndex lists it."""

    name: str
    version: str
    state: Literal["READY", "LOADING", "UNAVAILABLE", "UNLOADING"]
    reason: str


@dataclass
class ModelState:
    name: str
    status: Status = "loading"
    served: ServedModel | None = None
    error: str | None = None
    failed_signature: tuple[object, ...] | None = field(default=None, repr=False)


class ModelRepository:
    def __init__(
        self,
        settings: ServerSettings,
        metrics: ServerMetrics,
        decode_turns: DecodeTurns,
        on_change: Callable[[ModelState], None] = lambda state: None,
    ) -> None:
        self.settings, self.metrics, self.decode_turns = settings, metrics, decode_turns
        self.on_change = on_change
        self.models: dict[str, ModelState] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._scan_lock = asyncio.Lock()
        self.memory = MemoryBudget(settings.max_inflight_mb << 20)
        self.draining = False  # SIGTERM received: not ready, yet every request is still answered
        self.closed = False  # the server stopped accepting calls: none may reach a model now
        # model_control=explicit: the models loaded on request (None: poll mode, every folder)
        self.wanted: set[str] | None = None
        if settings.model_control == "explicit":
            self.wanted = set(settings.load_models)

    # -- lookups, answered from memory on the event loop ------------------------------------
    @contextmanager
    def lease(self, name: str, version: str = "") -> Iterator[ServedModel]:
        """The served model for a request, held until the request's answer is sent."""
        if self.closed:
            raise DrainingError("the server is shutting down; retry on another instance")
        state = self.models.get(name)
        if state is None and self.wanted is not None and self._folder(name) is not None:
            raise ModelLoadingError(
                f"model {name!r} is in the repository but not loaded (model_control=explicit); "
                "load it with RepositoryModelLoad"
            )
        if state is None:
            known = sorted(self.models)
            listed = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
            raise ModelNotFoundError(
                f"model {shown(name)} is not in the repository (models: {listed or 'none'})"
            )
        served = state.served
        if served is None:
            reason = {
                "failed": f"failed to load: {state.error}",
                "unloaded": "was unloaded; load it with RepositoryModelLoad",
            }.get(state.status, "is loading")
            raise ModelLoadingError(f"model {name!r} {reason}")
        if version and version != str(served.version):
            raise ModelNotFoundError(
                f"model {name!r} version {shown(version)} is not served (serving {served.version})"
            )
        with served.lease():
            yield served

    def ready(self, name: str, version: str = "") -> bool:
        state = self.models.get(name)
        served = state.served if state else None
        return served is not None and (not version or version == str(served.version))

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model folder, loaded or not, and any model still being unloaded."""
        entries = []
        for name in sorted(set(self._folders()) | set(self.models)):
            state = self.models.get(name)
            if state is None:
                entry = IndexEntry(name, "", "UNAVAILABLE", "not loaded")
            elif state.served is not None:
                entry = IndexEntry(name, str(state.served.version), "READY", "")
            elif state.status == "loading":
                entry = IndexEntry(name, "", "LOADING", "")
            else:
                entry = IndexEntry(name, "", "UNAVAILABLE", state.error or state.status)
            if entry.state == "READY" or not ready_only:
                entries.append(entry)
        return entries

    # -- model control ----------------------------------------------------------------------
    async def load(self, name: str) -> ServedModel:
        """Load `name` now (its newest or pinned version; a failed bundle is retried), and serve it
        from now on; in poll mode, the same as the next scan would do, without waiting for it."""
        check_model_name(name)
        folder = self._folder(name)
        if folder is None:
            raise ModelNotFoundError(f"no model folder {shown(name)} in the repository")
        async with self._scan_lock:
            if self.wanted is not None:
                self.wanted.add(name)
            state = self.models.get(name)
            if state is not None:
                state.failed_signature = None  # asked explicitly: try again even if unchanged
            await self._refresh(name, folder)
            state = self.models[name]
        if state.error is not None or state.served is None:
            serving = f"; version {state.served.version} goes on serving" if state.served else ""
            raise ModelLoadingError(f"model {name!r} failed to load: {state.error}{serving}")
        return state.served

    async def unload(self, name: str) -> None:
        """Stop serving `name` (model_control=explicit); returns once its accepted requests are answered."""
        if self.wanted is None:
            raise ModelControlError(
                "unloading needs model_control=explicit; in poll mode every model in the repository "
                "is served (remove its folder, or pin another version)"
            )
        check_model_name(name)
        state = self.models.get(name)
        if state is None:
            if self._folder(name) is None:
                raise ModelNotFoundError(f"no model {shown(name)} in the repository")
            return  # not loaded: nothing to do, as Triton answers
        async with self._scan_lock:
            self.wanted.discard(name)
            served, state.served, state.status, state.error = state.served, None, "unloaded", None
            self.on_change(state)
        if served is not None:
            log.info("unloading model", extra={"model": name, "version": served.version, "task": served.task})
            await self._retire(served)

    def _folders(self) -> dict[str, Path]:
        root = self.settings.models_dir
        return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}

    def _folder(self, name: str) -> Path | None:
        """`name`'s folder if it is a model folder of the repository (never a path elsewhere)."""
        try:
            check_model_name(name)
            folder = self.settings.models_dir / name
            return folder if folder.is_dir() else None
        except (InvalidModelNameError, OSError):
            return None

    def _relative(self, message: str) -> str:
        """`message` with the repository's own path cut from the paths it names (`tags/2/model.onnx`)."""
        root = self.settings.models_dir
        for prefix in sorted({str(root.absolute()), str(root.resolve()), str(root)}, key=len, reverse=True):
            message = message.replace(prefix + "/", "")  # the longest first: "models/" is in them all
        return message

    # -- scanning -------------------------------------------------------------------------
    async def scan(self) -> None:
        """Bring the served versions in line with the folders on disk (in explicit mode: those of
        the loaded models only)."""
        async with self._scan_lock:
            on_disk = found = self._folders()
            if self.wanted is not None:
                if "*" in self.wanted:  # load_models = ["*"]: everything there at start
                    self.wanted = set(found)
                found = {name: folder for name, folder in found.items() if name in self.wanted}
            for name, folder in found.items():
                try:
                    await self._refresh(name, folder)
                except Exception:  # e.g. the folder vanished mid-scan: the other models still refresh
                    log.exception("refreshing a model failed", extra={"model": name})
            unloaded = {name for name, state in self.models.items() if state.status == "unloaded"}
            for name in set(self.models) - set(found) - (unloaded & set(on_disk)):
                state = self.models.pop(name)
                if state.served is not None:
                    self._retire(state.served)
                state.served, state.status, state.error = None, "failed", "removed from the repository"
                self.on_change(state)
                log.info("model removed from the repository", extra={"model": name})

    async def poll(self) -> None:
        """Scan every `poll_interval_s` until cancelled; a failing scan is logged, never fatal."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.scan()
            except Exception:
                log.exception("repository scan failed")

    async def close(self) -> None:
        for state in self.models.values():
            if state.served is not None:
                self._retire(state.served)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _refresh(self, name: str, folder: Path) -> None:
        version_dir = self._wanted_version(name, folder)
        state = self.models.setdefault(name, ModelState(name))
        if version_dir is None:
            pinned = self.settings.pinned_version(name)
            wanted = f"{name}/{pinned}/ (pinned)" if pinned else f"{name}/<integer>/"
            error = f"no version folder: expected {wanted}"
            if state.error != error:
                self._fail(state, error, None)
            return
        served = state.served
        if served is not None and served.version == int(version_dir.name):
            return
        signature = _signature(version_dir)
        if state.failed_signature == signature:
            return  # failed before, unchanged since: do not retry (or log) every poll
        if served is not None and not self.settings.allow_incompatible_swaps:
            changes = await asyncio.get_running_loop().run_in_executor(
                None, _contract_changes, served.bundle.manifest, version_dir
            )
            if changes:
                self._refuse_swap(state, served, version_dir, changes, signature)
                return
        if served is None:
            state.status = "loading"
            self.on_change(state)
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                None, self._load_or_release, name, version_dir
            )
        except Exception as err:
            self._fail(state, f"{name}/{version_dir.name}: {err}", signature)
            return
        model.start()
        old, state.served, state.status, state.error, state.failed_signature = (
            served,
            model,
            "ready",
            None,
            None,
        )
        self.on_change(state)
        swapped = {} if old is None else {"replaces_version": old.version}
        log.info(
            "serving model",
            extra={
                "model": name,
                "version": model.version,
                "task": model.task,
                **swapped,
                "runtime": model.runtime.describe(),
                "images_prepared_on": "gpu" if model.prepare_on_gpu else "cpu",
            },
        )
        if old is not None:
            self._retire(old)

    def _wanted_version(self, name: str, folder: Path) -> Path | None:
        pinned = self.settings.pinned_version(name)
        if pinned is not None:
            path = folder / str(pinned)
            return path if path.is_dir() else None
        versions = [p for p in folder.iterdir() if p.is_dir() and is_version(p.name) and int(p.name) > 0]
        return max(versions, key=lambda p: int(p.name), default=None)

    def _load_or_release(self, name: str, version_dir: Path) -> ServedModel:
        """`_load`; where it fails, what the attempt read goes back to the OS at once (the loading
        thread's malloc arena would keep it: +20–50 MB resident per refused version in the soak)."""
        try:
            return self._load(name, version_dir)
        except Exception as err:
            message = str(err)  # the traceback, and the bundle its frames hold, go with `err`
        release_free_memory()
        raise ModelLoadFailedError(message)

    def _load(self, name: str, version_dir: Path) -> ServedModel:
        """Blocking: verify and unpickle the bundle, build the runtime, warm it up."""
        bundle = load_bundle(version_dir, self.settings.inference_threads)
        described = (bundle.manifest.name, bundle.manifest.version)
        if described != (name, int(version_dir.name)):
            # a copied folder (cp -r planet/1 planet/2) still says version 1: refused once, never
            # loaded as "v1" again and again on every poll
            raise BundleError(
                f"manifest describes {described[0]!r} version {described[1]}, but it lies in "
                f"{name}/{version_dir.name}/; folder and manifest must agree (re-export, or fix the folder)"
            )
        runtime = self.settings.runtime_for(name)
        model = ServedModel(
            bundle,
            runtime,
            self._device(runtime),
            self.settings.batching_for(name).config(),
            self.decode_turns,
            self.metrics.for_model(name, bundle.manifest.version),
            self.settings.max_image_pixels,
            self.settings.prepare_on_gpu,
            self.settings.cuda_graphs,
            self.memory,
            self.settings.cpu_graph,
        )
        model.warm_up()
        return model

    def _device(self, runtime: Literal["onnx", "torch"]) -> Device:
        wanted = self.settings.device
        if wanted == "cpu":
            return "cpu"
        if cuda_available(runtime):
            return "cuda"
        if wanted == "cuda":
            raise RuntimeError(f"device=cuda, but the {runtime} runtime finds no usable GPU here")
        return "cpu"

    def _fail(self, state: ModelState, error: str, signature: tuple[object, ...] | None) -> None:
        """Record why `state`'s model did not load: clients read it without the repository's path,
        the log keeps it whole."""
        state.error, state.failed_signature = self._relative(error), signature
        if state.served is None:
            state.status = "failed"
        self.on_change(state)
        log.error("model failed to load", extra={"model": state.name, "error": error})

    def _refuse_swap(
        self,
        state: ModelState,
        served: ServedModel,
        version_dir: Path,
        changes: list[str],
        signature: tuple[object, ...],
    ) -> None:
        """Keep `served` serving instead of a version its clients would misread; retried when the
        version's folder changes."""
        changed = "; ".join(changes)
        state.error = (
            f"version {version_dir.name} refused: it changes {changed} (publish it under another name, "
            "or set allow_incompatible_swaps)"
        )
        state.failed_signature = signature
        self.on_change(state)
        log.warning(
            "refused an incompatible version",
            extra={
                "model": state.name,
                "version": served.version,
                "task": served.task,
                "refused_version": int(version_dir.name),
                "changes": changed,
            },
        )

    def _retire(self, model: ServedModel) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(model.stop())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return task


def check_model_name(name: str) -> None:
    """Refuse a name that cannot be a model folder of the repository before it reaches the file
    system: a path (`..`, `a/b`), a hidden folder, a control character, or more than one path
    component holds (the OS would answer "file name too long")."""
    if not name:
        raise InvalidModelNameError("the model name is empty")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise InvalidModelNameError(
            f"model name {shown(name)} is {size} bytes long (UTF-8); a model folder's name holds "
            f"at most {MAX_NAME_BYTES}"
        )
    if name.startswith(".") or any(c in "/\\" or not c.isprintable() for c in name):
        raise InvalidModelNameError(
            f"model name {shown(name)} is not a model folder's name: no '/', '\\', control "
            "characters or leading '.'"
        )


def _contract_changes(served: Manifest, version_dir: Path) -> list[str]:
    """What clients of `served` rely on that the manifest in `version_dir` changes: its task, its
    labels (classes, codes, points) and its input (text or images, and their size). An unreadable
    manifest changes nothing here: loading the version reports it."""
    try:
        new = read_manifest(version_dir)
    except BundleError:
        return []

    def contract(manifest: Manifest) -> dict[str, object]:
        image = manifest.input
        shape = "text" if image is None else f"images of {image.size[0]}x{image.size[1]}"
        return {"task": manifest.task, "labels": manifest.labels, "input": shape}

    before, after = contract(served), contract(new)
    return [
        f"{key} {shown(before[key])} -> {shown(after[key])}" for key in before if before[key] != after[key]
    ]


def _signature(folder: Path) -> tuple[object, ...]:
    """Changes whenever a file in the folder is added, removed, or rewritten."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()))
    except OSError:
        return ()
