"""Text in the data block: texts → token ids (the tokenizer a bundle will carry) → batches.

    src = (ItemList.from_text_csv(path, "reviews.csv").split(ColumnSplitter("is_valid"))
           .label(FromColumn("label")))
    tokenizer = TextTokenizer.train(src.train.items)
    data = TextDataBunch.classifier(src, tokenizer, bs=32)              # labelled texts
    lm = TextDataBunch.language_model(src, tokenizer, bs=32, bptt=70)   # the same texts, no labels

Classifier batches hold one text a row, right-padded with `xxpad` to the longest in the batch. To keep
padding small, training batches are "sortish" (shuffled, then sorted by length within chunks of 50
batches, then the batches shuffled) and validation batches are sorted by length. A language model
reads every text (training and validation, without labels, as ULMFiT does; 10 % held out to score it)
concatenated into `bs`
parallel streams, in `bptt`-token windows whose target is the window one token later.
Both loaders have the interface the `Learner` uses: `len`, `set_epoch`, and device batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from serving.bundle.text_preprocess import cut, pad_ids
from serving.bundle.tokenizer import TextTokenizer
from training.data.block import LabelledData
from training.errors import DataError

__all__ = ["ClassifierLoader", "LanguageModelLoader", "TextDataBunch", "pad_batch"]

Batch = tuple[torch.Tensor, torch.Tensor]
SORTISH_CHUNK = 50  # batches per chunk sorted together


def pad_batch(ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, longest) int64, each row right-padded with `xxpad`, as the server pads (`pad_ids`)."""
    return torch.from_numpy(pad_ids([np.asarray(row, dtype=np.int64) for row in ids]))


class ClassifierLoader:
    """Labelled texts in batches of similar length (see the module's docstring)."""

    def __init__(
        self,
        ids: Sequence[Sequence[int]],
        targets: torch.Tensor,
        bs: int,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        self.ids, self.targets, self.bs, self.device = ids, targets, bs, device
        self.shuffle, self.seed = shuffle, seed
        self.lengths = torch.tensor([len(row) for row in ids])
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.ids) / self.bs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # the same batches for epoch n, fresh or resumed

    def batch_indices(self) -> list[list[int]]:
        if not self.shuffle:
            longest_first = torch.argsort(self.lengths, descending=True, stable=True).tolist()
            return [longest_first[i : i + self.bs] for i in range(0, len(longest_first), self.bs)]
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        shuffled = torch.randperm(len(self.ids), generator=generator)
        chunk = self.bs * SORTISH_CHUNK
        order: list[int] = []
        for start in range(0, len(shuffled), chunk):
            part = shuffled[start : start + chunk]
            order += part[torch.argsort(self.lengths[part], descending=True, stable=True)].tolist()
        batches = [order[i : i + self.bs] for i in range(0, len(order), self.bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[Batch]:
        for indices in self.batch_indices():
            x = pad_batch([self.ids[i] for i in indices])
            y = self.targets[indices]
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class LanguageModelLoader:
    """Every text, concatenated in a per-epoch shuffled order, as `bs` streams of `bptt` windows."""

    def __init__(
        self,
        ids: Sequence[Sequence[int]],
        bs: int,
        bptt: int,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        total = sum(len(row) for row in ids)
        if total < bs * 2:
            raise DataError(f"{total} tokens cannot fill {bs} streams; use a smaller batch size")
        self.ids, self.bs, self.bptt, self.device = ids, bs, bptt, device
        self.shuffle, self.seed = shuffle, seed
        self.steps = (total // bs) - 1  # positions with a next token
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.steps / self.bptt)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def streams(self) -> torch.Tensor:
        """(bs, tokens per stream): the texts end to end, cut into `bs` equal rows."""
        order = list(range(len(self.ids)))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(order), generator=generator).tolist()
        flat = torch.tensor([token for i in order for token in self.ids[i]], dtype=torch.long)
        per_stream = len(flat) // self.bs
        return flat[: per_stream * self.bs].view(self.bs, per_stream)

    def __iter__(self) -> Iterator[Batch]:
        streams = self.streams()
        for start in range(0, self.steps, self.bptt):
            length = min(self.bptt, self.steps - start)
            x, y = streams[:, start : start + length], streams[:, start + 1 : start + 1 + length]
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class TextDataBunch:
    """Train and valid text loaders over one `LabelledData`, with the interface the Learner uses."""

    def __init__(
        self,
        src: LabelledData,
        tokenizer: TextTokenizer,
        train_dl: ClassifierLoader | LanguageModelLoader,
        valid_dl: ClassifierLoader | LanguageModelLoader,
        bs: int,
        device: torch.device,
    ) -> None:
        self.src, self.tokenizer, self.train_dl, self.valid_dl = src, tokenizer, train_dl, valid_dl
        self.bs, self.device = bs, device
        self.ranks = None  # text runs in one process for now
        self.stats = None

    @property
    def classes(self) -> list[str]:
        return self.src.classes

    @classmethod
    def classifier(
        cls,
        src: LabelledData,
        tokenizer: TextTokenizer,
        bs: int = 32,
        device: str | None = None,
        seed: int = 0,
        max_tokens: int | None = None,
    ) -> TextDataBunch:
        """`max_tokens`: longer texts are cut as the exported model cuts them
        (`serving.bundle.text_preprocess.cut`)."""
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        limit = max_tokens or 1 << 30
        train = [cut(row, limit) for row in tokenizer.encode([str(t) for t in src.train.items])]
        valid = [cut(row, limit) for row in tokenizer.encode([str(t) for t in src.valid.items])]
        return cls(
            src, tokenizer,
            ClassifierLoader(train, src.y_train, bs, where, shuffle=True, seed=seed),
            ClassifierLoader(valid, src.y_valid, bs * 2, where, shuffle=False),
            bs, where,
        )  # fmt: skip

    @classmethod
    def language_model(
        cls,
        src: LabelledData,
        tokenizer: TextTokenizer,
        bs: int = 32,
        bptt: int = 70,
        extra: Sequence[str] = (),
        valid_pct: float = 0.1,
        device: str | None = None,
        seed: int = 0,
    ) -> TextDataBunch:
        """Every text (training and validation, without labels, and `extra` ones: ULMFiT's recipe);
        a seeded `valid_pct` of them scores the model instead of teaching it."""
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        texts = [str(t) for t in [*src.train.items, *src.valid.items, *extra]]
        ids = tokenizer.encode(texts)
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, round(len(ids) * valid_pct))
        valid, train = [ids[i] for i in order[:cut]], [ids[i] for i in order[cut:]]
        return cls(
            src, tokenizer,
            LanguageModelLoader(train, bs, bptt, where, shuffle=True, seed=seed),
            LanguageModelLoader(valid, bs, bptt, where, shuffle=False),
            bs, where,
        )  # fmt: skip
