"""Server settings: file < environment < flags, every knob checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.server.settings import ServerSettings, load_settings


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        "port = 9000\nmetrics_port = 9002\n[batching]\nmax_batch_size = 8\n[models.planet]\nversion = 2\n"
    )
    monkeypatch.setenv("SERVE_METRICS_PORT", "9102")
    monkeypatch.setenv("SERVE_BATCHING__MAX_QUEUE_DELAY_US", "500")
    settings = load_settings(models_dir=tmp_path, config_file=config, port=9200)
    assert (settings.port, settings.metrics_port) == (9200, 9102)
    assert (settings.batching.max_batch_size, settings.batching.max_queue_delay_us) == (8, 500)
    assert settings.pinned_version("planet") == 2 and settings.pinned_version("other") is None


def test_a_yaml_file_works_too(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("models:\n  planet:\n    batching:\n      max_batch_size: 4\n    runtime: torch\n")
    settings = load_settings(models_dir=tmp_path, config_file=config)
    assert settings.batching_for("planet").max_batch_size == 4 and settings.runtime_for("planet") == "torch"
    assert settings.batching_for("other").max_batch_size == 32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot = 1\n", "prot\n  Extra inputs are not permitted"),
        (
            "[batching]\nmax_batch_size = 0\n",
            "batching.max_batch_size\n  Input should be greater than or equal to 1",
        ),
        ("[models.planet]\nruntime = 'tf'\n", "models.planet.runtime\n  Input should be 'onnx' or 'torch'"),
    ],
)
def test_a_wrong_key_or_value_names_the_field(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(content)
    with pytest.raises(ValidationError) as info:
        load_settings(models_dir=tmp_path, config_file=config)
    assert message in str(info.value)


def test_a_missing_models_folder_or_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a folder"):
        load_settings(models_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist"):
        load_settings(models_dir=tmp_path, config_file=tmp_path / "nope.toml")


def test_the_malloc_arenas_setting_reaches_glibc() -> None:
    """On glibc (this machine's C library) the cap is accepted (`serve-kit serve` applies it first) and
    free pages go back to the OS (the soak's memory bound fails without both)."""
    from serving.server.malloc import limit_malloc_arenas, release_free_memory

    assert ServerSettings().malloc_arenas == 2
    assert limit_malloc_arenas(ServerSettings().malloc_arenas) is True
    assert release_free_memory() is True  # what the repository does after a refused version


@pytest.mark.parametrize("word", ["none", "None", "NONE"])
def test_none_turns_the_http_and_metrics_listeners_off_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    """As `serve-kit serve --help` says: a variable cannot be null, so the word stands for it."""
    monkeypatch.setenv("SERVE_HTTP_PORT", word)
    monkeypatch.setenv("SERVE_METRICS_PORT", word)
    monkeypatch.setenv("SERVE_FEEDBACK__DIR", word)
    settings = load_settings(models_dir=tmp_path)
    assert (settings.http_port, settings.metrics_port, settings.feedback.dir) == (None, None, None)


def test_none_from_a_flag_or_the_file_turns_a_listener_off_and_a_number_still_counts(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("metrics_port = 'none'\n")
    settings = load_settings(models_dir=tmp_path, config_file=config, http_port="none")
    assert (settings.http_port, settings.metrics_port) == (None, None)
    assert load_settings(models_dir=tmp_path, http_port="9000").http_port == 9000
    with pytest.raises(ValidationError, match="http_port"):
        load_settings(models_dir=tmp_path, http_port="off")
