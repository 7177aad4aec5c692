"""Server configuration: defaults < a TOML or YAML file < `SERVE_*` environment variables < flags.

Nested knobs use `__` in environment variables (`SERVE_BATCHING__MAX_BATCH_SIZE=16`); per-model
overrides live in the file (`[models.planet] max_batch_size = 8`). Everything is checked once at
start-up; a wrong key or value stops the server with the field's name and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from serving.server.batcher import BatchingConfig

__all__ = ["Batching", "ModelSettings", "ServerSettings", "load_settings"]

MiB = 1 << 20


def _none_word(value: Any) -> Any:
    """'none' (any case) turns a listener or store off: an environment variable or a flag cannot be null."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


OrNone = BeforeValidator(_none_word)
"""On a field typed `X | None`: the word 'none' in a variable, a flag or the file stands for None."""


class Batching(BaseModel):
    """Triton's dynamic-batching knobs: a batch closes at `max_batch_size` items or once its first
    item has waited `max_queue_delay_us`; past `max_queue_size` waiting items a request is refused."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(32, ge=1, le=1024, description="a batch closes at this many items")
    max_queue_delay_us: int = Field(
        2000, ge=0, le=10_000_000, description="or once its first item has waited this long (µs)"
    )
    max_queue_size: int = Field(1024, ge=1, description="items waiting; more: RESOURCE_EXHAUSTED at once")

    def config(self) -> BatchingConfig:
        return BatchingConfig(self.max_batch_size, self.max_queue_delay_us, self.max_queue_size)


class ModelSettings(BaseModel):
    """Overrides for one model: a pinned version, its own batching, its own runtime."""

    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1, description="serve this version, not the newest")
    batching: Batching | None = None
    runtime: Literal["onnx", "torch"] | None = Field(None, description="this model's runtime")


class Feedback(BaseModel):
    """Where `Tasks.Feedback` stores corrections (off without a folder), and how many it keeps."""

    model_config = ConfigDict(extra="forbid")
    dir: Annotated[Path | None, OrNone] = Field(
        None, description="feedback store: <dir>/<model>/; none: Feedback is off"
    )
    max_records: int = Field(10_000, ge=1, description="records kept per model; more: RESOURCE_EXHAUSTED")
    max_record_mb: float = Field(16, gt=0, description="largest record (image + mask) in MiB")


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVE_", env_nested_delimiter="__", extra="forbid")

    models_dir: Path = Field(Path("models"), description="the model repository: <name>/<version>/")
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 in a container")
    port: int = Field(8001, ge=0, le=65535, description="gRPC port (0: any free port)")
    http_port: Annotated[int | None, OrNone] = Field(
        8000, ge=0, le=65535, description="KServe V2 HTTP/REST port (0: any free port; none: off)"
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        description="open HTTP connections at most (kept below half the open-file limit); more: "
        "closed at once with 503, while open ones keep working",
    )
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="HTTP: a request's line and headers must arrive within this; else 408"
    )
    http_body_timeout_s: float = Field(
        60.0, gt=0, description="HTTP: a request's whole body must arrive within this; else 408"
    )
    http_idle_timeout_s: float = Field(
        75.0, gt=0, description="HTTP: a keep-alive connection idle this long is closed"
    )
    metrics_port: Annotated[int | None, OrNone] = Field(
        8002, ge=0, le=65535, description="Prometheus /metrics port; none: off"
    )
    reuse_port: bool = Field(
        False,
        description="share the gRPC and HTTP ports with other serve-kit processes on purpose (SO_REUSEPORT: "
        "the kernel spreads connections); off: a port in use stops the server",
    )
    runtime: Literal["onnx", "torch"] = Field("onnx", description="default runtime for every model")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA where present")
    cpu_graph: bool = Field(
        True,
        description="ONNX on a CPU: run a bundle's model.cpu.onnx (int8 or fp32, parity-checked at export) "
        "where it has one; off: model.onnx everywhere",
    )
    batching: Batching = Field(default_factory=Batching)
    feedback: Feedback = Field(default_factory=Feedback)
    models: dict[str, ModelSettings] = Field(default_factory=dict, description="per-model overrides")
    inference_threads: Annotated[int | None, OrNone] = Field(
        None, ge=1, description="intra-op threads per model (none: all)"
    )
    decode_threads: int = Field(4, ge=1, le=256, description="threads decoding and resizing images")
    malloc_arenas: int = Field(
        2,
        ge=1,
        le=1024,
        description="glibc malloc arenas the threads share: few keep resident memory flat under load "
        "(glibc's own default is 8 per core)",
    )
    prepare_on_gpu: bool = Field(
        True, description="models PyTorch runs on CUDA: decode JPEGs, resize, normalize on the GPU"
    )
    cuda_graphs: Literal["off", "capture", "compile"] = Field(
        "capture", description="models PyTorch runs on CUDA: replay CUDA graphs per batch-size bucket"
    )
    max_concurrent_rpcs: int = Field(
        1024, ge=1, description="calls in progress at once; more: RESOURCE_EXHAUSTED"
    )
    max_inflight_mb: int = Field(
        1024,
        ge=1,
        description="memory all requests in flight may hold (sent, prepared, and each image while it "
        "decodes, counted from its header); more: RESOURCE_EXHAUSTED",
    )
    max_message_mb: int = Field(64, ge=1, le=2047, description="largest gRPC message in MiB, either way")
    max_image_pixels: int = Field(40_000_000, ge=1, description="largest declared image (pixels)")
    poll_interval_s: float = Field(5.0, ge=0, description="repository scan period; 0: load once")
    model_control: Literal["poll", "explicit"] = Field(
        "poll",
        description="poll: serve every model in models_dir; explicit: only those loaded (load_models, "
        "RepositoryModelLoad), as Triton's --model-control-mode=explicit",
    )
    load_models: list[str] = Field(
        default_factory=list, description="model_control=explicit: models loaded at start ('*': all)"
    )
    allow_incompatible_swaps: bool = Field(
        False,
        description="swap in a new version whose task, labels or input differ from the served one's; "
        "off: such a version is refused and the served one goes on serving",
    )
    drain_prestop_s: float = Field(
        5.0, ge=0, description="SIGTERM: keep answering this long while health says NOT_SERVING"
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM: how long in-flight work may finish")
    log_format: Literal["json", "text"] = Field("json", description="logs on stderr: JSON lines or text")

    config_file: Path | None = Field(None, description="TOML or YAML file with any of these settings")

    @model_validator(mode="after")
    def _models_dir_exists(self) -> ServerSettings:
        if not self.models_dir.is_dir():
            raise ValueError(
                f"models_dir {self.models_dir} is not a folder; create it or point --models at one"
            )
        return self

    def batching_for(self, model: str) -> Batching:
        override = self.models.get(model)
        return override.batching if override and override.batching else self.batching

    def runtime_for(self, model: str) -> Literal["onnx", "torch"]:
        override = self.models.get(model)
        return override.runtime if override and override.runtime else self.runtime

    def pinned_version(self, model: str) -> int | None:
        override = self.models.get(model)
        return override.version if override else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init arguments) win over the environment, which wins over the config file."""
        named = getattr(init_settings, "init_kwargs", {}).get("config_file") or os.environ.get(
            "SERVE_CONFIG_FILE"
        )
        if not named:
            return init_settings, env_settings
        return init_settings, env_settings, file_source(settings_cls, Path(named))


def file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    raise ValueError(f"config file {path}: expected .toml, .yaml or .yml")


def load_settings(**flags: Any) -> ServerSettings:
    """Settings from the config file, the environment and `flags` (a None flag means not given)."""
    return ServerSettings(**{k: v for k, v in flags.items() if v is not None})
