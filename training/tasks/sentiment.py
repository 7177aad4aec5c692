"""Text sentiment (n-grams, ULMFiT, or both): texts and labels from a CSV with a boolean `valid`
column, trained by its own recipe (`training.sentiment`: tokenizer, language model, classifier).
The bundle carries the tokenizer and the token limit; its export is checked on real validation
texts, a one-word text and one cut at the limit (the shortest and longest inputs), each alone and
all in one padded batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.bundle import Parity
from serving.bundle.networks import NetworkSpec
from serving.bundle.networks.awd_lstm import AwdLstmSpec
from serving.bundle.networks.hybrid import HybridSpec
from serving.bundle.networks.ngrams import NgramSpec
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.tasks import sentiment as served
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import TextTokenizer
from training.config import TrainConfig
from training.data import ColumnSplitter, ItemList
from training.errors import ConfigError, DataError
from training.sentiment import run_sentiment, valid_column
from training.tasks.base import ExportOptions, ExportPlan, Recipe, TrainingTask
from training.tasks.parity import probability_parity

__all__ = ["TASK", "check_text_parity", "parity_texts"]


class SentimentTask(TrainingTask):
    name = "sentiment"
    served = served.TASK

    def spec(self, meta: dict[str, Any]) -> NetworkSpec:
        """An LSTM's, an n-gram branch's, or a hybrid's of both (by the keys the spec holds)."""
        spec = meta["spec"]
        if "lstm" in spec:
            return HybridSpec(AwdLstmSpec(**spec["lstm"]), NgramSpec(**spec["ngrams"]))
        return NgramSpec(**spec) if "buckets" in spec else AwdLstmSpec(**spec)

    @property
    def recipe(self) -> Recipe:
        return run_sentiment

    def postprocess(self, classes: list[str], cfg: TrainConfig) -> SingleLabelPostprocess:
        return SingleLabelPostprocess(tuple(classes))

    def export_plan(
        self,
        meta: dict[str, Any],
        cfg: TrainConfig,
        model: nn.Module,
        options: ExportOptions,
    ) -> ExportPlan:
        """Right-padded int64 token ids (N, T), both axes dynamic (T up to the bundle's `max_tokens`):
        the server tokenizes and cuts exactly as training did."""
        if options.resolution != "squish":
            raise ConfigError("--resolution is for image models; a text model has no resolution")
        preprocess = TextPreprocess(TextTokenizer(meta["tokenizer"]), int(meta["max_tokens"]), truncate=True)
        texts = parity_texts(cfg, preprocess, options.parity_items)

        def check(_rounded: nn.Module, onnx_path: Path) -> Parity:
            return check_text_parity(model, onnx_path, preprocess, texts, options.tolerance)

        return ExportPlan(
            preprocess, self.postprocess(list(meta["classes"]), cfg), preprocess(texts[:2]), check
        )


TEXT_PARITY_ITEMS = 2000
"""Validation texts checked at export, at least: the whole set of a small data set. A text costs
little to check, and on 64 of them one disagreement (1.6 %) would fail the 0.5 % bar."""


def parity_texts(cfg: TrainConfig, preprocess: TextPreprocess, n: int) -> list[str]:
    """The validation texts of the run's data (up to `n` or `TEXT_PARITY_ITEMS`, the larger), a
    one-word text, and one over the token limit."""
    try:
        items = ItemList.from_text_csv(cfg.data, cfg.csv, cfg.text_col)
    except DataError as err:
        raise DataError(
            f"the parity check reads validation texts from the run's data at {cfg.data}, and could not: "
            f"{err}. Export from the folder the run was started in."
        ) from err
    _, valid_rows = ColumnSplitter(valid_column(cfg))(items)
    valid = [str(items.items[i]) for i in valid_rows]
    return [*valid[: max(n - 2, TEXT_PARITY_ITEMS)], "good", over_the_limit(valid, preprocess)]


def over_the_limit(texts: list[str], preprocess: TextPreprocess) -> str:
    """Texts joined until they pass the token limit, and no further: all of a large validation set
    joined would pass the byte limit too, and be refused instead of cut."""
    pool = [text for text in texts if text.strip()] or ["word"]
    joined, used = pool[0], 1
    while len(preprocess.tokenizer.encode([joined])[0]) <= preprocess.max_tokens:
        joined, used = f"{joined} {pool[used % len(pool)]}", used + 1
    return joined


def check_text_parity(
    model: nn.Module, onnx_path: Path, preprocess: TextPreprocess, texts: list[str], tolerance: float
) -> Parity:
    """ONNX fp16 against PyTorch fp32, each text alone and all in one padded batch."""
    batch = preprocess(texts)
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(batch)).float().numpy()
    runtime = OnnxRuntime(onnx_path)
    alone = np.concatenate([runtime.run(preprocess([text])) for text in texts])
    return probability_parity(expected, [runtime.run(batch), alone], tolerance, "validation texts")


TASK = SentimentTask()
