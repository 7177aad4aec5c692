from __future__ import annotations

from pathlib import Path

import pytest

from training.config import load_config, parse_lr
from training.errors import ConfigError
from training.tasks.multilabel import MultilabelConfig
from training.tasks.sentiment import SentimentConfig


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e-3", 1e-3), ("1e-5:2e-3", (1e-5, 2e-3)), (0.01, 0.01)],
)
def test_learning_rates_parse_as_one_rate_or_a_range(text: str | float, expected: object) -> None:
    assert parse_lr(text) == expected


@pytest.mark.parametrize("text", ["fast", "1e-3:1e-5", "-1", "1:2:3", "0"])
def test_bad_learning_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="learning rate"):
        parse_lr(text)


def test_a_toml_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('data = "data/scenes"\narch = "resnet18"\nepochs = 3\nlr = "1e-5:1e-3"\n')
    cfg = load_config(MultilabelConfig, path, {"epochs": 7, "size": None})
    assert (cfg.arch, cfg.epochs, cfg.size) == ("resnet18", 7, 64)
    assert cfg.learning_rate == slice(1e-5, 1e-3)


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('data = "d"\nepoch = 3\n')
    with pytest.raises(ConfigError, match=r"run.toml: unknown key 'epoch' \(known keys: .*epochs"):
        load_config(MultilabelConfig, path, {})


def test_a_wrong_type_names_the_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bs: .*'many'"):
        load_config(MultilabelConfig, None, {"data": "d", "bs": "many"})
    with pytest.raises(ConfigError, match="arch"):
        load_config(MultilabelConfig, None, {"data": "d", "arch": "vgg16"})
    with pytest.raises(ConfigError, match="'data' is required"):
        load_config(MultilabelConfig, None, {})


def test_broken_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("data = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(MultilabelConfig, bad, {})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(MultilabelConfig, tmp_path / "missing.toml", {})


def test_stage_names_must_be_plain_file_names() -> None:
    with pytest.raises(ConfigError, match="stage"):
        load_config(MultilabelConfig, None, {"data": "d", "stage": "../escape"})


def test_a_stage_may_not_overwrite_the_stage_it_starts_from() -> None:
    with pytest.raises(ConfigError, match="would overwrite the --from-stage"):
        load_config(MultilabelConfig, None, {"data": "d", "stage": "stage-1", "from_stage": "stage-1"})


def test_sentiment_options_live_in_its_own_config_with_their_own_defaults() -> None:
    cfg = load_config(SentimentConfig, None, {"data": "d"})
    assert (cfg.csv, cfg.label_col, cfg.valid_col, cfg.bs, cfg.epochs, str(cfg.out)) == (
        "reviews.csv", "label", "is_valid", 32, 4, "runs/sentiment",
    )  # fmt: skip
    assert (cfg.arch, cfg.text_col, cfg.vocabulary, cfg.max_tokens) == ("ngram", "text", "word", 4096)
    lstm = load_config(SentimentConfig, None, {"data": "d", "arch": "ulmfit"})  # the LSTMs' own defaults
    assert (lstm.vocabulary, lstm.vocab_size, lstm.max_tokens) == ("bpe", 8000, 512)
    assert load_config(SentimentConfig, None, {"data": "d", "bs": 8}).bs == 8


def test_weights_name_a_new_pretrained_body_and_nothing_else() -> None:
    with pytest.raises(ConfigError, match="drop --no-pretrained"):
        load_config(MultilabelConfig, None, {"data": "d", "weights": "body.pth", "pretrained": False})
    with pytest.raises(ConfigError, match="--from-stage stage-1 continues a trained one: give one of them"):
        load_config(
            MultilabelConfig,
            None,
            {"data": "d", "weights": "body.pth", "from_stage": "stage-1", "stage": "s2"},
        )


def test_every_body_and_text_network_is_an_arch_and_nothing_else_is() -> None:
    from serving.bundle.networks.bodies import BODIES
    from training.tasks import TASKS
    from training.tasks.sentiment import TEXT_ARCHS

    archs = {arch for task in TASKS.values() for arch in task.settings.archs()}
    assert archs == set(BODIES) | set(TEXT_ARCHS)
