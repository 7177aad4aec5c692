"""Texts in the data block: read from a CSV column or label folders, batched by length, streamed for
a language model, and trained on by the same Learner."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from serving.bundle.tokenizer import BOS, PAD, TextTokenizer
from training.data import ColumnSplitter, FromColumn, ItemList
from training.data.block import LabelledData
from training.data.text import ClassifierLoader, LanguageModelLoader, TextDataBunch, pad_batch
from training.errors import DataError
from training.learner import Learner
from training.metrics import accuracy

GOOD = ["a wonderful film", "superb acting and a wonderful story", "i loved it", "great fun"]
BAD = ["a dull film", "terrible acting and a dull story", "i hated it", "boring and long " * 5]


def write_reviews(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "reviews.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_valid"])
        for i in range(n):
            good = i % 2 == 0
            text = (GOOD if good else BAD)[i % 4] + " ." * (i % 7)
            writer.writerow([text, "pos" if good else "neg", str(i >= n - 8)])
    return root


def labelled(root: Path) -> LabelledData:
    return ItemList.from_text_csv(root, "reviews.csv").split(ColumnSplitter("is_valid")).label(FromColumn("label"))


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(GOOD * 10 + BAD * 10, vocab_size=200, min_frequency=1)


def test_texts_come_from_a_csv_column_with_their_labels_and_split(tmp_path: Path) -> None:
    src = labelled(write_reviews(tmp_path))
    assert (len(src.train), len(src.valid), src.classes) == (32, 8, ["neg", "pos"])
    assert src.train.items[0] == "a wonderful film" and int(src.y_train[0]) == 1
    (tmp_path / "reviews.csv").write_text("text,label\n,pos\nfine,neg\n")
    with pytest.raises(DataError, match=r"reviews\.csv line 2: column 'text' is empty"):
        ItemList.from_text_csv(tmp_path, "reviews.csv")


def test_texts_come_from_label_folders(tmp_path: Path) -> None:
    for split, label, text in [("train", "pos", "great"), ("train", "neg", "awful"), ("valid", "pos", "fine")]:
        (tmp_path / split / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / split / label / f"{text}.txt").write_text(text)
    items = ItemList.from_text_folders(tmp_path)
    assert sorted(zip(items.items, [r["label"] for r in items.rows or []], strict=True)) == [
        ("awful", "neg"), ("fine", "pos"), ("great", "pos"),
    ]  # fmt: skip
    assert {r["split"] for r in items.rows or []} == {"train", "valid"}


def test_padding_is_on_the_right_with_xxpad() -> None:
    assert pad_batch([[2, 7, 8], [2, 9]]).tolist() == [[2, 7, 8], [2, 9, PAD]]


def test_sortish_batches_cover_every_text_once_and_pad_far_less_than_random() -> None:
    rng = torch.Generator().manual_seed(0)
    ids = [[BOS] + [5] * int(n) for n in torch.randint(1, 400, (2000,), generator=rng)]
    loader = ClassifierLoader(ids, torch.zeros(2000, dtype=torch.long), 32, torch.device("cpu"), shuffle=True)
    batches = loader.batch_indices()
    assert sorted(i for b in batches for i in b) == list(range(2000))
    loader.set_epoch(1)
    assert loader.batch_indices() != batches  # a new order each epoch...
    loader.set_epoch(0)
    assert loader.batch_indices() == batches  # ...and the same one again on a resume

    def padding(groups: list[list[int]]) -> int:
        return sum(max(len(ids[i]) for i in g) * len(g) - sum(len(ids[i]) for i in g) for g in groups)

    shuffled = torch.randperm(2000, generator=rng).tolist()
    assert padding(batches) < 0.1 * padding([shuffled[i : i + 32] for i in range(0, 2000, 32)])
    valid = ClassifierLoader(ids, torch.zeros(2000, dtype=torch.long), 64, torch.device("cpu"), shuffle=False)
    lengths = [len(ids[i]) for b in valid.batch_indices() for i in b]
    assert lengths == sorted(lengths, reverse=True)


def test_a_language_model_reads_bs_streams_and_predicts_the_next_token() -> None:
    ids = [list(range(i * 100, i * 100 + 50)) for i in range(8)]  # 400 distinct tokens
    loader = LanguageModelLoader(ids, bs=4, bptt=7, device=torch.device("cpu"), shuffle=False)
    batches = list(loader)
    assert len(batches) == len(loader)
    for x, y in batches:
        assert x.shape == y.shape and x.shape[0] == 4
    x = torch.cat([b[0] for b in batches], dim=1)
    y = torch.cat([b[1] for b in batches], dim=1)
    streams = loader.streams()
    assert torch.equal(x, streams[:, :-1]) and torch.equal(y, streams[:, 1:])


class MeanOfEmbeddings(nn.Module):
    """The smallest text classifier: average the non-padding token embeddings."""

    def __init__(self, vocab: int, classes: int) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, 16, padding_idx=PAD), nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != PAD).unsqueeze(-1).float()
        return self.head((self.embed(x) * mask).sum(1) / mask.sum(1))


def test_the_learner_trains_on_text_batches(tmp_path: Path, tokenizer: TextTokenizer) -> None:
    data = TextDataBunch.classifier(labelled(write_reviews(tmp_path)), tokenizer, bs=8, device="cpu")
    torch.manual_seed(0)
    learn = Learner(data, MeanOfEmbeddings(tokenizer.vocab_size, 2), nn.CrossEntropyLoss(), [accuracy])
    learn.fit_one_cycle(8, 5e-2)
    assert learn.history[-1].train_loss < learn.history[0].train_loss
    assert learn.history[-1].metrics["accuracy"] >= 0.75
    lm = TextDataBunch.language_model(labelled(write_reviews(tmp_path)), tokenizer, bs=4, bptt=5, device="cpu")
    assert len(lm.train_dl) > 0 and len(lm.valid_dl) > 0


def test_a_language_model_validates_batch_by_batch(tmp_path: Path, tokenizer: TextTokenizer) -> None:
    """Streamed validation equals the whole-set one for means over tokens, without holding the set."""
    from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel
    from training.losses import next_token_loss

    lm = TextDataBunch.language_model(labelled(write_reviews(tmp_path)), tokenizer, bs=4, bptt=6, device="cpu")
    torch.manual_seed(0)
    model = LanguageModel(AwdLstmSpec(tokenizer.vocab_size, emb=8, hidden=12, layers=2))
    learn = Learner(lm, model, next_token_loss, [accuracy])
    learn.stream_validation = True  # windows differ in length: the whole set would not even stack
    loss, metrics = learn.validate()
    model.eval()
    with torch.inference_mode():  # the same means, over every token at once
        pairs = [(model(x).flatten(0, 1), y.flatten()) for x, y in lm.valid_dl]
    logits, targets = torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, targets)), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float(accuracy(logits, targets)), rel=1e-5)
    learn.fit(1, 1e-2)
    assert learn.history[0].valid_loss < loss  # it learns which token comes next
