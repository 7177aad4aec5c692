"""`serve-kit`: serve the model repository over gRPC (KServe V2 + the typed task API)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from serving.server.settings import ServerSettings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)


def knobs(model: type[BaseModel] = ServerSettings, prefix: str = "SERVE_") -> list[str]:
    """Every setting as `ENV_VAR (default) description`, nested ones with their `__` path."""
    lines = []
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += knobs(annotation, f"{env}__")
            continue
        default: Any = field.get_default(call_default_factory=True)
        lines.append(f"{env} (default {default!s}): {field.description or ''}".rstrip(": "))
    return lines


EPILOG = (
    "Every knob, as an environment variable (the same names, lower-case, work as keys in the --config "
    "file; per-model overrides go in its [models.<name>] tables):\n\n" + "\n\n".join(knobs())
)


@app.command(epilog=EPILOG)
def serve(
    models: Annotated[
        Path | None, typer.Option(help="the model repository (models/<name>/<version>/)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port")] = None,
    # text, not int: 'none' turns the listener off (the settings read the word)
    http_port: Annotated[
        str | None, typer.Option(metavar="<int|none>", help="KServe V2 HTTP/REST port; none: off")
    ] = None,
    metrics_port: Annotated[
        str | None, typer.Option(metavar="<int|none>", help="Prometheus /metrics port; none: off")
    ] = None,
    runtime: Annotated[str | None, typer.Option(help="onnx or torch")] = None,
    model_control: Annotated[
        str | None, typer.Option(help="poll: serve every model; explicit: only those loaded")
    ] = None,
    load_model: Annotated[
        list[str] | None, typer.Option(help="model_control=explicit: load this model at start ('*': all)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML or YAML settings file")] = None,
) -> None:
    """Load every bundle under the repository and answer gRPC clients until SIGTERM."""
    from serving.server.app import ListenError, run_server
    from serving.server.logs import configure_logging
    from serving.server.malloc import limit_malloc_arenas

    try:
        settings = load_settings(
            models_dir=models,
            host=host,
            port=port,
            http_port=http_port,
            metrics_port=metrics_port,
            runtime=runtime,
            model_control=model_control,
            load_models=load_model or None,
            config_file=config,
        )
    except (ValidationError, ValueError) as err:
        typer.echo(f"serve-kit: invalid settings: {err}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_format)
    limit_malloc_arenas(settings.malloc_arenas)  # before any thread pool starts
    try:
        asyncio.run(run_server(settings))
    except ListenError as err:
        typer.echo(f"serve-kit: {err}", err=True)
        raise typer.Exit(1) from None
    exit_after_drain()


def exit_after_drain() -> None:
    """End the process as soon as the drain is done. Every accepted call has been answered and the
    listeners are closed, so nothing is left to lose; but interpreter finalization then waits on gRPC
    core's own shutdown, measured at 13 s under 32 reconnecting clients, which would outlast
    Kubernetes' grace period and turn a clean stop into a SIGKILL. Logs and stdio are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command()
def settings(config: Annotated[Path | None, typer.Option(help="TOML or YAML settings file")] = None) -> None:
    """Print the settings the server would run with (file + environment), as JSON."""
    try:
        typer.echo(load_settings(config_file=config).model_dump_json(indent=2))
    except (ValidationError, ValueError) as err:
        typer.echo(f"serve-kit: invalid settings: {err}", err=True)
        raise typer.Exit(2) from None


@app.command()
def health(
    address: Annotated[
        str | None, typer.Option(help="the server's gRPC host:port (default: 127.0.0.1 and SERVE_PORT)")
    ] = None,
    service: Annotated[str, typer.Option(help="a model name; empty: the whole server")] = "",
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 3.0,
) -> None:
    """Exit 0 if the server (or one model) is SERVING, else 1: a container health probe."""
    from serving.server.probe import check_health

    serving, seen = check_health(address or f"127.0.0.1:{load_settings().port}", service, timeout)
    typer.echo(seen, err=not serving)
    raise typer.Exit(0 if serving else 1)


if __name__ == "__main__":
    app()
