"""Sentiment on a CSV of labelled texts: a subword tokenizer, then (`--arch`) a bag of n-grams, an
AWD-LSTM classifier on a language model (ULMFiT), or both added together (`hybrid`, the default).

    train-kit train sentiment --data data/reviews        # tokenizer + LM + n-grams + hybrid classifier
    train-kit train sentiment --arch ngram               # the n-gram branch alone: no LM, minutes
    train-kit train sentiment --arch ulmfit --encoder runs/sentiment/encoder.pt   # reuse an LM
    train-kit sentiment --data data/reviews              # the same, by its older name

1. The tokenizer learns its vocabulary (subwords; whole words with `--vocabulary word`) from every
   text (training, validation, and the unlabelled `extra_csv` if the folder has one): no labels are
   read, so nothing leaks.
2. The language model (not for `ngram`) reads the same texts, without labels, as ULMFiT does, and
   is scored on 10 % of them by perplexity and next-token accuracy. Its encoder is saved with the
   tokenizer and the spec as `encoder.pt`, which `--encoder` loads instead of training one.
3. The n-gram branch (`ngram`, `hybrid`): naive-Bayes-scaled logistic regression over each text's
   uni- and bigrams of those tokens (`serving.bundle.networks.ngrams`), solved to its optimum with
   its penalty cross-validated on the training texts (`training.ngram_fit`). For `ngram` that is
   stage `clf`; for `hybrid`, stage `ngram`.
4. The LSTM classifier (`ulmfit`, `hybrid`) puts concat pooling and a head on the encoder and thaws
   it gradually: the head (`freeze_to(-1)`, stage `clf-1`), then the last LSTM too (`freeze_to(-2)`,
   `clf-2`), then all (`unfreeze`, `clf`), with discriminative rates falling by 2.6 per group towards
   the embedding. In a hybrid, its logits are added to the frozen n-gram branch's, from zero.
   Texts are cut to `max_tokens`, exactly as the exported bundle cuts them.

The options are a `SentimentConfig` (`training.tasks.sentiment`; its defaults suit the demo reviews on
a CPU). This module plans the stages and hands the encoder and tokenizer from one to the next; the
one runner (`training.stages`) fits, resumes and scores each, as it does an image task's stage. So
every stage is a checkpoint with its metrics and plot; `<out>/clf.metrics.json` holds the
classifier's accuracy beside the majority-class baseline, and the language model's perplexity;
`<out>/clf.curves.png` plots the classifier's fits (`clf-1`, `clf-2`, `clf`: losses and accuracy).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from serving.bundle.networks import NetworkSpec
from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel, TextClassifier
from serving.bundle.networks.hybrid import HybridClassifier, HybridSpec
from serving.bundle.networks.ngrams import NgramClassifier, NgramSpec
from serving.bundle.tokenizer import TextTokenizer
from training.checkpoint import atomic_save, load_checkpoint
from training.data import ColumnSplitter, FromColumn, ItemList, LabelledData
from training.data.splitters import subsampled
from training.data.text import TextDataBunch
from training.errors import ConfigError, DataError
from training.learner import EpochRecord, Learner, Reporter
from training.losses import next_token_loss
from training.metrics import accuracy
from training.models import text_layer_groups
from training.ngram_fit import fit_ngram_branch
from training.stages import BaselineModel, OneCycle, Stage, StageFit, run_stages

if TYPE_CHECKING:  # the task module plans with this one: it imports this module, not the other way round
    from training.tasks.sentiment import SentimentConfig

__all__ = ["SolveNgrams", "load_encoder", "run_sentiment", "sentiment_stages", "valid_column"]

ENCODER_FILE = "encoder.pt"
DISCRIMINATIVE = 2.6  # ULMFiT: each layer group's rate is the next one's / 2.6
ULMFIT_MOMS = (0.8, 0.7)  # ULMFiT's momentums over each one cycle


def valid_column(cfg: SentimentConfig) -> str:
    """The boolean CSV column marking validation rows: texts are split by it, never at random."""
    if not cfg.valid_col:
        raise ConfigError("sentiment splits by a boolean CSV column: give --valid-col (default is_valid)")
    return cfg.valid_col


def _check(cfg: SentimentConfig) -> float:
    """Options sentiment cannot take, refused before anything is written; returns the classifier
    head's one rate (the groups below get ULMFiT's falling rates)."""
    if isinstance(cfg.lr, tuple):
        raise ConfigError(f"--lr {cfg.lr[0]}:{cfg.lr[1]}: sentiment takes one rate, the head's")
    if cfg.bs < 2:
        raise ConfigError(f"--bs {cfg.bs}: a language model needs at least 2 streams")
    if cfg.encoder is not None and cfg.arch == "ngram":
        raise ConfigError("--encoder is an LSTM's; --arch ngram has none (choose hybrid or ulmfit)")
    if cfg.lm_epochs == 0 and cfg.encoder is None and cfg.arch != "ngram":
        raise ConfigError(f"--lm-epochs 0 needs --encoder: --arch {cfg.arch} puts a classifier on an encoder")
    return cfg.lr


def run_sentiment(cfg: SentimentConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Tokenizer → language model (or `cfg.encoder`) → classifier, through the one runner; returns
    the metrics of the last stage, `clf`."""
    return run_stages(sentiment_stages(cfg, reporter), cfg)


def sentiment_stages(cfg: SentimentConfig, reporter: Reporter | None = None) -> Iterator[Stage]:
    """The run's stages, each built once the one before it has run: the language model `lm`
    (whose encoder it hands on, saved as `encoder.pt`), then `cfg.arch`'s classifier stages.
    The tokenizer is learnt first, outside any stage: every stage reads through it."""
    _check(cfg)
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    src = (
        ItemList.from_text_csv(cfg.data, cfg.csv, cfg.text_col)
        .split(subsampled(ColumnSplitter(valid_column(cfg)), cfg.max_train, cfg.max_valid, cfg.split_seed))
        .label(FromColumn(cfg.label_col))
    )
    extra = _extra_texts(cfg)
    tokenizer, spec, encoder = _tokenizer(cfg, src, extra)
    lm_scores: dict[str, Any] = {}
    if cfg.lm_epochs > 0 and cfg.arch != "ngram":
        lm = language_model_learner(cfg, src, tokenizer, spec, encoder, extra, reporter)
        yield Stage(
            "lm",
            lm,
            OneCycle(cfg.lm_epochs, cfg.lm_lr, moms=ULMFIT_MOMS),
            report=lambda learn: {"language_model": language_model_scores(learn, tokenizer.vocab_size)},
        )
        encoder = {k: v.detach().cpu() for k, v in cast(LanguageModel, lm.model).encoder.state_dict().items()}
        save_encoder(cfg.out / ENCODER_FILE, tokenizer, spec, encoder)
        lm_scores = language_model_scores(lm, tokenizer.vocab_size)
    yield from classifier_stages(cfg, src, tokenizer, spec, encoder, lm_scores, reporter)


def _tokenizer(
    cfg: SentimentConfig, src: LabelledData, extra: list[str]
) -> tuple[TextTokenizer, AwdLstmSpec, dict[str, torch.Tensor] | None]:
    """The tokenizer and LSTM spec: `cfg.encoder`'s (with its weights), a resumed run's own (ids
    must mean the same), or a new one learnt from every text, labelled or not."""
    if cfg.encoder is not None:
        return load_encoder(cfg.encoder)
    lm_stage = cfg.out / "lm.pt"
    if cfg.resume and lm_stage.is_file():
        meta = load_checkpoint(lm_stage)["meta"]
        return TextTokenizer(meta["tokenizer"]), AwdLstmSpec(**meta["spec"]), None
    if cfg.arch == "ngram":
        # A word gets weight only if training saw it with a label: the vocabulary is every word of
        # the training texts (once is enough), and the table holds no row nothing can reach.
        texts, min_frequency = [str(t) for t in src.train.items], 1
    else:  # the language model reads every text, labelled or not
        texts, min_frequency = [str(t) for t in [*src.train.items, *src.valid.items, *extra]], 2
    tokenizer = TextTokenizer.train(texts, cfg.vocab_size, min_frequency, vocabulary=cfg.vocabulary)
    return tokenizer, AwdLstmSpec(tokenizer.vocab_size, cfg.emb, cfg.hidden, cfg.layers), None


def language_model_learner(
    cfg: SentimentConfig,
    src: LabelledData,
    tokenizer: TextTokenizer,
    spec: AwdLstmSpec,
    encoder: dict[str, torch.Tensor] | None,
    extra: list[str],
    reporter: Reporter | None,
) -> Learner[TextDataBunch]:
    """The LM on every text (no labels), scored on 10 % of them; from `encoder` where given."""
    data = TextDataBunch.language_model(src, tokenizer, cfg.bs, cfg.bptt, extra, seed=cfg.seed)
    model = LanguageModel(spec)
    if encoder is not None:
        model.encoder.load_state_dict(encoder)
    meta = {
        "task": "lm",
        "spec": dataclasses.asdict(spec),
        "tokenizer": tokenizer.spec,
        "config": cfg.model_dump(mode="json"),
    }
    learn = Learner(
        data,
        model,
        next_token_loss,
        [accuracy],
        wd=cfg.wd,
        path=cfg.out,
        reporter=reporter,
        meta=meta,
    )
    learn.stream_validation = True  # (N, T, vocab) outputs: averaged per batch, never stacked
    if cfg.fp16:
        learn.to_fp16()
    return learn


def language_model_scores(learn: Learner[Any], vocab_size: int) -> dict[str, Any]:
    """What the classifier's metrics say of the LM it stands on: perplexity, next-token accuracy."""
    last = learn.history[-1]
    return {
        "perplexity": math.exp(min(last.valid_loss, 50.0)),
        "next_token_accuracy": last.metrics["accuracy"],
        "valid_loss": last.valid_loss,
        "epochs": len(learn.history),
        "vocab_size": vocab_size,
    }


def classifier_stages(
    cfg: SentimentConfig,
    src: LabelledData,
    tokenizer: TextTokenizer,
    spec: AwdLstmSpec,
    encoder: dict[str, torch.Tensor] | None,
    lm_scores: dict[str, Any],
    reporter: Reporter | None,
) -> Iterator[Stage]:
    """`cfg.arch`'s classifier, ending in stage `clf` (the one to export): the n-gram branch alone
    (`ngram`), ULMFiT's gradual unfreezing on the encoder (`ulmfit`: `clf-1`, `clf-2`, `clf`), or
    the n-gram branch first (stage `ngram`) and then the LSTM beside it, unfrozen as ULMFiT's."""
    data = TextDataBunch.classifier(src, tokenizer, cfg.bs, seed=cfg.seed, max_tokens=cfg.max_tokens)
    classes = len(data.classes)
    ngram_spec = NgramSpec(tokenizer.vocab_size, classes, cfg.ngram_buckets)
    lstm_spec = dataclasses.replace(spec, n_classes=classes)
    baseline = BaselineModel(majority_logits, src.y_train, src.y_valid)

    def learner(model: nn.Module, model_spec: NetworkSpec, groups: list[nn.Module] | None = None) -> Learner:
        meta = {
            "task": "sentiment",
            "spec": dataclasses.asdict(model_spec),
            "classes": data.classes,
            "tokenizer": tokenizer.spec,
            "max_tokens": cfg.max_tokens,
            "config": cfg.model_dump(mode="json"),
        }
        learn = Learner(
            data,
            model,
            nn.CrossEntropyLoss(),
            [accuracy],
            groups,
            wd=cfg.wd,
            path=cfg.out,
            reporter=reporter,
            meta=meta,
        )
        if cfg.fp16:
            learn.to_fp16()
        return learn

    def stage(name: str, learn: Learner, fit: StageFit, freeze_to: int | None = None) -> Stage:
        def run_facts(_: Learner[Any]) -> dict[str, Any]:
            return {"arch": cfg.arch, "language_model": lm_scores}

        return Stage(name, learn, fit, freeze_to, baseline, report=run_facts)

    if cfg.arch == "ngram":
        yield stage("clf", learner(NgramClassifier(ngram_spec), ngram_spec), SolveNgrams(cfg.seed))
        return
    if encoder is None:  # `_check` refused this already; said again for the type checker
        raise ConfigError(f"--lm-epochs 0 needs --encoder: --arch {cfg.arch} puts a classifier on an encoder")
    model: nn.Module
    model_spec: NetworkSpec
    if cfg.arch == "hybrid":
        ngrams = NgramClassifier(ngram_spec)
        yield stage("ngram", learner(ngrams, ngram_spec), SolveNgrams(cfg.seed))
        model_spec = HybridSpec(lstm_spec, ngram_spec)
        model = hybrid = HybridClassifier(model_spec)
        hybrid.ngrams.load_state_dict(ngrams.state_dict())
        hybrid.ngrams.requires_grad_(False)  # in no layer group: the LSTM learns what it adds
        lstm = hybrid.lstm
    else:
        model = lstm = TextClassifier(lstm_spec)
        model_spec = lstm_spec
    lstm.encoder.load_state_dict(encoder)
    learn = learner(model, model_spec, text_layer_groups(lstm))
    # ULMFiT's gradual unfreezing: the head, then the last LSTM too, then all, each group's rate
    # 2.6x below the next
    lr = _check(cfg)
    spread = DISCRIMINATIVE ** (len(learn.layer_groups) - 1)
    yield stage("clf-1", learn, OneCycle(1, lr, moms=ULMFIT_MOMS), freeze_to=-1)
    yield stage("clf-2", learn, OneCycle(1, slice(lr / 2 / spread, lr / 2), moms=ULMFIT_MOMS), freeze_to=-2)
    yield stage(
        "clf", learn, OneCycle(cfg.epochs, slice(lr / 10 / spread, lr / 10), moms=ULMFIT_MOMS), freeze_to=0
    )


def majority_logits(train_targets: torch.Tensor, valid_targets: torch.Tensor) -> torch.Tensor:
    """Every validation text given the training set's most frequent class."""
    counts = torch.bincount(train_targets)
    logits = torch.zeros(len(valid_targets), len(counts))
    logits[:, int(counts.argmax())] = 1.0
    return logits


@dataclass(frozen=True)
class SolveNgrams:
    """The n-gram branch fitted to its optimum (`training.ngram_fit`), not by epochs: one record in
    its history, saved once solved; resumed, a solved stage is loaded as it is."""

    seed: int

    def __call__(self, learn: Learner[Any], stage: str, resume: bool) -> None:
        if resume:
            learn.history = [EpochRecord(**r) for r in learn.load(stage)["history"]]
            return
        began = time.perf_counter()
        fit = fit_ngram_branch(cast(NgramClassifier, learn.model), learn.data.train_dl, seed=self.seed)
        valid_loss, metrics = learn.validate()
        learn.meta["ngram_fit"] = {"c": fit.c, "beta": fit.beta, "cv_accuracy": fit.cv_accuracy}
        learn.history.append(EpochRecord(1, fit.train_loss, valid_loss, metrics, time.perf_counter() - began))
        if learn.reporter is not None:
            learn.reporter.fit_begin(1, 0, 0)
            learn.reporter.epoch_end(learn.history[-1])
            learn.reporter.fit_end()
        learn.save(stage)


def save_encoder(
    path: Path, tokenizer: TextTokenizer, spec: AwdLstmSpec, state: dict[str, torch.Tensor]
) -> None:
    """The encoder with what it needs to be reused: its tokenizer (ids mean nothing without it)."""
    plain = dataclasses.asdict(dataclasses.replace(spec, n_classes=None))
    atomic_save(
        {"format": 1, "kind": "text-encoder", "spec": plain, "tokenizer": tokenizer.spec, "model": state},
        path,
    )


def load_encoder(path: Path) -> tuple[TextTokenizer, AwdLstmSpec, dict[str, torch.Tensor]]:
    """An `encoder.pt` (from this kit, or any file of that layout): tokenizer, spec, weights."""
    state = load_checkpoint(path)
    if state.get("kind") != "text-encoder":
        raise ConfigError(
            f"--encoder {path}: not a text encoder saved by train-kit (no 'kind: text-encoder')"
        )
    try:
        spec = AwdLstmSpec(**state["spec"])
        tokenizer = TextTokenizer(state["tokenizer"])
        vocab = tokenizer.vocab_size
    except Exception as err:  # a hand-made file can hold anything
        raise ConfigError(f"--encoder {path}: unreadable spec or tokenizer ({err})") from err
    if vocab != spec.vocab_size:
        raise ConfigError(f"--encoder {path}: tokenizer has {vocab} tokens, the encoder {spec.vocab_size}")
    probe = TextClassifier(dataclasses.replace(spec, n_classes=2)).encoder
    try:
        probe.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ConfigError(f"--encoder {path}: weights do not fit its spec ({err})") from err
    return tokenizer, spec, state["model"]


def _extra_texts(cfg: SentimentConfig) -> list[str]:
    """The unlabelled texts of `extra_csv` (its `text_col`), if the data folder has that file."""
    if cfg.extra_csv is None or not (cfg.data / cfg.extra_csv).is_file():
        return []
    try:
        return [str(t) for t in ItemList.from_text_csv(cfg.data, cfg.extra_csv, cfg.text_col).items]
    except DataError as err:
        raise DataError(f"extra texts for the language model: {err}") from err
