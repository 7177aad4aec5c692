"""`train-kit train sentiment` at toy size: its stages, gradual unfreezing, encoder reuse, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from serving.bundle import BundleError, load_bundle
from serving.bundle.networks.ngrams import ngram_ids
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import TextTokenizer
from training.checkpoint import load_checkpoint
from training.errors import ConfigError
from training.sentiment import load_encoder, run_sentiment
from training.tasks.multilabel import MultilabelConfig
from training.tasks.sentiment import SentimentConfig


def encoder_weights(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The encoder's weights under `prefix`, in a classifier's state or a hybrid's (`lstm.encoder.`)."""
    return {
        k.removeprefix("lstm.").removeprefix("encoder."): v
        for k, v in state.items()
        if k.removeprefix("lstm.").startswith(f"encoder.{prefix}")
    }


def test_a_run_writes_the_lm_the_encoder_the_classifier_stages_and_their_metrics(sentiment_run: Path) -> None:
    for name in ("lm.pt", "encoder.pt", "ngram.pt", "clf-1.pt", "clf-2.pt", "clf.pt", "clf.metrics.json"):
        assert (sentiment_run / name).is_file(), name
    result = json.loads((sentiment_run / "clf.metrics.json").read_text())
    lm = result["language_model"]
    assert 1 < lm["perplexity"] < 120 and math.isclose(lm["perplexity"], math.exp(lm["valid_loss"]))
    assert 0 <= lm["next_token_accuracy"] <= 1
    assert result["baseline"] == {"accuracy": 0.5}  # the toy set is balanced
    # it learnt: seeds 0-2 of this toy set scored 0.73-0.82 against the majority's 0.5
    assert result["metrics"]["accuracy"] >= result["baseline"]["accuracy"] + 0.1, result["metrics"]
    assert load_checkpoint(sentiment_run / "clf.pt")["complete"]


def test_gradual_unfreezing_trains_the_head_then_the_last_lstm_then_everything(sentiment_run: Path) -> None:
    """Groups (2 LSTMs): [embedding + LSTM 0], [LSTM 1], [head]. A frozen group's weights stay as
    the language model left them, to the bit; a thawed one's move."""
    _, _, start = load_encoder(sentiment_run / "encoder.pt")
    stages = {
        name: load_checkpoint(sentiment_run / f"{name}.pt")["model"] for name in ("clf-1", "clf-2", "clf")
    }

    def moved(stage: str, prefix: str) -> bool:
        now = encoder_weights(stages[stage], prefix)
        assert now, prefix
        return any(not torch.equal(v, start[k]) for k, v in now.items())

    assert not moved("clf-1", "embedding") and not moved("clf-1", "rnns.0") and not moved("clf-1", "rnns.1")
    assert not moved("clf-2", "embedding") and not moved("clf-2", "rnns.0") and moved("clf-2", "rnns.1")
    assert moved("clf", "embedding") and moved("clf", "rnns.0")


def test_a_saved_encoder_starts_a_classifier_without_a_new_language_model(
    sentiment_run: Path, review_texts: Path, tmp_path: Path
) -> None:
    cfg = SentimentConfig(
        arch="ulmfit", data=review_texts, encoder=sentiment_run / "encoder.pt",
        lm_epochs=0, max_tokens=48, bs=8, epochs=1, out=tmp_path,
    )  # fmt: skip
    result = run_sentiment(cfg)
    assert not (tmp_path / "lm.pt").exists() and (tmp_path / "clf.pt").is_file()
    assert not (tmp_path / "ngram.pt").exists()  # ulmfit: the LSTM classifier alone, as ULMFiT's
    assert result["language_model"] == {}
    trained = load_checkpoint(tmp_path / "clf.pt")["meta"]
    assert trained["tokenizer"] == load_checkpoint(sentiment_run / "clf.pt")["meta"]["tokenizer"]


def test_a_file_that_is_not_an_encoder_is_refused_by_name(sentiment_run: Path, review_texts: Path) -> None:
    with pytest.raises(ConfigError, match=r"clf-1\.pt: not a text encoder"):
        load_encoder(sentiment_run / "clf-1.pt")
    with pytest.raises(ConfigError, match="--lm-epochs 0 needs --encoder"):
        run_sentiment(
            SentimentConfig(arch="ulmfit", data=review_texts, lm_epochs=0, out=sentiment_run / "never")
        )


def test_the_bundle_carries_the_tokenizer_and_limit_and_passed_parity(sentiment_bundle: Path) -> None:
    bundle = load_bundle(sentiment_bundle)
    manifest, pre = bundle.manifest, bundle.pipeline.preprocess
    assert manifest.task == "sentiment" and manifest.labels == ["neg", "pos"] and manifest.input is None
    assert manifest.text is not None and (manifest.text.max_tokens, manifest.text.truncate) == (48, True)
    assert isinstance(pre, TextPreprocess) and pre.max_tokens == 48
    parity = manifest.parity
    assert (
        parity.measure == "probability" and parity.items == 102
    )  # every one of the 100 validation texts (not just --parity-items 32), one word, one too long
    assert parity.agreement >= 0.995 and parity.max_abs_diff <= parity.tolerance  # type: ignore[operator]


def test_onnx_and_torch_answer_alike_from_one_word_to_the_limit(sentiment_bundle: Path) -> None:
    bundle = load_bundle(sentiment_bundle)
    texts = ["good", "a dull film", "superb " * 100]
    onnx, torch_answers = bundle.predict(texts), bundle.predict(texts, runtime="torch")
    for a, b in zip(onnx, torch_answers, strict=True):
        assert a["label"] == b["label"] and a["scores"]["pos"] == pytest.approx(b["scores"]["pos"], abs=1e-2)


def test_a_manifest_whose_limit_differs_from_the_pipeline_is_refused(
    sentiment_bundle: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "reviews" / "1"
    shutil.copytree(sentiment_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["text"]["max_tokens"] = 4096
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="token limit that differs"):
        load_bundle(copy)


def test_a_killed_run_resumes_reusing_its_tokenizer_and_finished_stages(
    sentiment_run: Path, review_texts: Path, tmp_path: Path
) -> None:
    """The run died during its last stage: the rerun loads `lm`, `ngram`, `clf-1`, `clf-2` as they
    are (bit for bit, no epoch repeated) and trains `clf` only."""
    import shutil

    for name in ("lm.pt", "encoder.pt", "ngram.pt", "clf-1.pt", "clf-2.pt"):
        shutil.copy(sentiment_run / name, tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in ("lm.pt", "ngram.pt", "clf-1.pt", "clf-2.pt")}
    cfg = SentimentConfig.model_validate(
        load_checkpoint(sentiment_run / "clf.pt")["meta"]["config"] | {"out": tmp_path, "resume": True}
    )
    result = run_sentiment(cfg)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert load_checkpoint(tmp_path / "clf.pt")["complete"] and len(result["history"]) == 2 + cfg.epochs
    assert (
        load_checkpoint(tmp_path / "clf.pt")["meta"]["tokenizer"]
        == load_checkpoint(sentiment_run / "lm.pt")["meta"]["tokenizer"]
    )


@pytest.mark.parametrize("command", [["train", "sentiment"], ["sentiment"]])
def test_train_sentiment_and_its_alias_run_the_same_recipe(
    command: list[str], review_texts: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, [*command, "--data", str(review_texts), "--arch", "hybrid", "--vocab-size", "120",
              "--lm-epochs", "0", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2 and "--lm-epochs 0 needs --encoder" in result.output


def test_ngram_features_are_each_unigram_and_bigram_of_real_tokens_once() -> None:
    tokens = torch.tensor([[2, 5, 6, 5, 6, 0, 0], [2, 7, 7, 7, 9, 3, 4]])
    features = ngram_ids(tokens, vocab_size=10, buckets=97)
    bigram = {(a, b): 10 + (a * 10 + b) * 1640531527 % 97 for a in range(10) for b in range(10)}
    first = {2, 5, 6, bigram[2, 5], bigram[5, 6], bigram[6, 5]}  # (6, 0): padding is no bigram
    second = {2, 7, 9, 3, 4, bigram[2, 7], bigram[7, 7], bigram[7, 9], bigram[9, 3], bigram[3, 4]}
    for row, expected in zip(features.tolist(), (first, second), strict=True):
        real = [f for f in row if f]
        assert sorted(real) == sorted(expected)  # each once: a text holds a feature or not
        assert len(row) == 2 * tokens.shape[1] - 1


def test_a_hybrid_starts_from_its_trained_ngram_branch_which_the_lstm_stages_leave_alone(
    sentiment_run: Path,
) -> None:
    ngram = load_checkpoint(sentiment_run / "ngram.pt")
    assert ngram["meta"]["spec"]["buckets"] == 4096
    for stage in ("clf-1", "clf-2", "clf"):
        state = load_checkpoint(sentiment_run / f"{stage}.pt")["model"]
        for key, value in ngram["model"].items():
            assert torch.equal(state[f"ngrams.{key}"], value), (stage, key)
    clf = load_checkpoint(sentiment_run / "clf.pt")["model"]
    assert clf["lstm.head.6.weight"].abs().sum() > 0  # the LSTM's last layer, zero at the start, learnt
    # the branch's table leans each way: a sentiment word towards its class
    tokenizer = TextTokenizer(ngram["meta"]["tokenizer"])
    table = ngram["model"]["weight.weight"]  # two classes: one column, pos's logit over neg's
    assert table.shape[1] == 1 and ngram["meta"]["classes"] == ["neg", "pos"]
    for word, sign in (("wonderful", 1), ("awful", -1)):
        tokens = tokenizer.encode([word])[0][1:]  # after xxbos
        assert sign * sum(float(table[token, 0]) for token in tokens) > 0, word


def test_the_ngram_arch_needs_no_language_model_and_exports_a_bundle_that_answers(
    review_texts: Path, tmp_path: Path
) -> None:
    from training.export import export_stage

    cfg = SentimentConfig(
        arch="ngram", data=review_texts, vocab_size=120, max_tokens=48, bs=16,
        ngram_buckets=4096, out=tmp_path / "run",
    )  # fmt: skip
    result = run_sentiment(cfg)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["clf.pt"]  # no LM, no encoder
    assert result["language_model"] == {} and result["arch"] == "ngram"
    assert result["metrics"]["accuracy"] >= result["baseline"]["accuracy"] + 0.2, result["metrics"]
    bundle = load_bundle(export_stage(tmp_path / "run", "clf", "ngrams", tmp_path / "models"))
    assert bundle.manifest.parity.agreement == 1.0
    answers = bundle.predict(["a superb , wonderful film", "an awful , boring plot"])
    assert [a["label"] for a in answers] == ["pos", "neg"]


def test_an_encoder_is_refused_for_the_ngram_arch_and_a_resnet_for_sentiment(
    review_texts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="--arch ngram has none"):
        run_sentiment(SentimentConfig(arch="ngram", data=review_texts, encoder=Path("e.pt"), out=out))
    assert not out.exists()  # refused before anything is written
    with pytest.raises(ValueError, match="--arch resnet34 is not a sentiment network"):
        SentimentConfig(arch="resnet34", data=review_texts)
    with pytest.raises(ValueError, match="--arch hybrid is not a multilabel network"):
        MultilabelConfig(arch="hybrid", data=review_texts)


def test_the_parity_texts_of_a_large_validation_set_stay_within_the_byte_limit(tmp_path: Path) -> None:
    """Every validation text joined, to make one over the token limit, passed 1 MiB on the real
    reviews (300 of ~3,900 characters each, here 12 of 100,000) and export failed on its own text."""
    import csv

    from training.tasks.sentiment import parity_texts

    rows = [[f"{'good ' if i % 2 else 'bad '}" * 20_000, "pos", "true"] for i in range(12)]
    with (tmp_path / "reviews.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["text", "label", "is_valid"], *rows])
    preprocess = TextPreprocess(TextTokenizer.train(["good bad"] * 10, 100), max_tokens=64, truncate=True)
    cfg = SentimentConfig(data=tmp_path)
    texts = parity_texts(cfg, preprocess, 32)
    assert len(texts) == 14 and all(len(preprocess.prepare(text)) <= 64 for text in texts)


def toy_ngram_texts(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts of 4 tokens whose label is token 3 (pos) or 4 (neg) among random filler 5-19."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=generator)
    tokens = torch.randint(5, 20, (n, 4), generator=generator)
    tokens[:, 1] = torch.where(labels == 1, 3, 4)
    tokens[:, 0] = 2  # xxbos
    return tokens, labels


def test_the_ngram_fit_picks_its_penalty_and_interpolation_by_cross_validation() -> None:
    from serving.bundle.networks.ngrams import NgramClassifier, NgramSpec
    from training.ngram_fit import BETAS, C_GRID, fit_ngram_branch

    tokens, labels = toy_ngram_texts()
    model = NgramClassifier(NgramSpec(vocab_size=30, n_classes=2, buckets=101))
    fit = fit_ngram_branch(model, [(tokens[i : i + 32], labels[i : i + 32]) for i in range(0, 200, 32)])
    assert fit.c in C_GRID and fit.beta in BETAS
    assert len(fit.cv_accuracy) == len(C_GRID) * len(BETAS) and min(fit.cv_accuracy.values()) == 1.0
    table = model.weight.weight.detach()
    assert table.shape == (131, 1)  # two classes: one column, class 1's logit over class 0's
    assert table[3, 0] > 0 > table[4, 0]  # token 3 says pos, 4 neg
    never = [t for t in range(30) if t not in tokens.unique().tolist()]  # e.g. 20-29
    assert never and not table[never].any()  # no evidence, no weight
    assert not table[0].any()  # padding counts for nothing
    assert set(model.state_dict()) == {"weight.weight", "bias"}  # one table: no ratios to ship


def test_the_sparse_solve_reaches_the_penalized_optimum() -> None:
    """At the solution, the gradient of the same objective written densely (every text's feature
    rows gathered) vanishes: the sparse product and its hand-written gradient are right."""
    from serving.bundle.networks.ngrams import ngram_ids
    from training.ngram_fit import SparseTexts, naive_bayes_ratios, solve

    tokens, labels = toy_ngram_texts(120)
    tokens[::3, 2] = 0  # padding inside some rows
    features = ngram_ids(tokens, 30, 101)
    ratio = naive_bayes_ratios(features, labels, 131, 2)
    c = 0.5
    solution = solve(SparseTexts.of(features), labels, ratio, c)
    weight = torch.zeros(131, 2)
    weight[solution.used] = solution.weight
    weight.requires_grad_(True)
    logits = (weight[features] * ratio[features]).sum(1) + solution.bias
    loss = torch.nn.functional.cross_entropy(logits, labels) + weight.pow(2).sum() / (2 * c * len(labels))
    loss.backward()
    assert weight.grad is not None and float(weight.grad.abs().max()) < 1e-4
    assert float(solution.weight.abs().max()) > 0.1  # and it is not the trivial zero


def test_interpolation_pulls_each_weight_towards_the_mean_magnitude() -> None:
    """Each class's weight scales that class's ratios (which carry the sign), so weights are alike
    across classes; β = 0 would leave their mean alone: multinomial naive Bayes."""
    from training.ngram_fit import _Solution

    weight = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    solution = _Solution(torch.tensor([0, 2, 3]), weight, torch.zeros(2))
    ratio = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, -0.5], [2.0, -2.0]])
    assert torch.equal(
        solution.table(ratio, 1.0, 4), torch.tensor([[0, 0], [0, 0], [0.5, -0.5], [6.0, -6.0]])
    )
    # mean |w| over real features: 2 per class; β = 0.5 → w' = 1 + w/2: 1.5 and 2.5
    half = solution.table(ratio, 0.5, 4)
    assert torch.allclose(half, torch.tensor([[0, 0], [0, 0], [0.75, -0.75], [5.0, -5.0]]))
    assert torch.allclose(solution.table(ratio, 0.0, 4)[2:], 2 * ratio[2:])  # naive Bayes, scaled


def test_a_two_table_ngram_network_loads_as_its_product() -> None:
    """Bundles and checkpoints written before the tables were folded keep answering as they did."""
    from serving.bundle.networks.ngrams import NgramClassifier, NgramSpec, ngram_ids

    spec = NgramSpec(vocab_size=30, n_classes=2, buckets=101)
    generator = torch.Generator().manual_seed(1)
    weight, ratio = torch.randn(131, 2, generator=generator), torch.randn(131, 2, generator=generator)
    weight[0] = ratio[0] = 0
    model = NgramClassifier(spec)
    model.load_state_dict({"weight.weight": weight, "ratio": ratio, "bias": torch.tensor([0.1, -0.1])})
    tokens, _ = toy_ngram_texts(8)
    features = ngram_ids(tokens, 30, 101)
    expected = (weight[features] * ratio[features]).sum(1) + torch.tensor([0.1, -0.1])
    assert torch.allclose(model(tokens).softmax(1), expected.softmax(1), atol=1e-6)
    assert model.weight.weight.shape == (131, 1)


def test_the_default_ngram_run_reads_training_words_and_repeats_itself_exactly(
    review_texts: Path, tmp_path: Path
) -> None:
    """The same data and seed: the same tokenizer, the same table, bit for bit. Its vocabulary is the
    training texts' words, so a word only validation holds is unknown to it."""
    import csv

    with (review_texts / "reviews.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    train_words = {w.lower() for r in rows if r["is_valid"] == "false" for w in r["text"].split()}
    runs = []
    for name in ("a", "b"):
        cfg = SentimentConfig(data=review_texts, ngram_buckets=4096, out=tmp_path / name)
        assert (cfg.arch, cfg.vocabulary, cfg.max_tokens) == ("ngram", "word", 4096)
        run_sentiment(cfg)
        runs.append(load_checkpoint(tmp_path / name / "clf.pt"))
    assert runs[0]["meta"]["tokenizer"] == runs[1]["meta"]["tokenizer"]
    for key, value in runs[0]["model"].items():
        assert torch.equal(value, runs[1]["model"][key]), key
    vocab = TextTokenizer(runs[0]["meta"]["tokenizer"]).tokenizer.get_vocab()
    assert {w for w in vocab if not w.startswith("xx")} <= train_words | {".", "xxbos"}
    assert "wonderful" in vocab and "unheardof" not in vocab
