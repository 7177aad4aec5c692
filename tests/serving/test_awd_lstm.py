"""The AWD-LSTM-style networks: a tied language model, and a classifier whose answer for a text does
not depend on the padding its batch adds. (Gradual unfreezing is the learner's,
tested beside it.)"""

from __future__ import annotations

from pathlib import Path

import torch

from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel, TextClassifier, build_text_network

SPEC = AwdLstmSpec(vocab_size=60, emb=16, hidden=24, layers=3)


def test_the_language_model_predicts_every_next_token_with_a_tied_decoder() -> None:
    model = build_text_network(SPEC)
    assert isinstance(model, LanguageModel)
    assert model(torch.randint(1, 60, (4, 9))).shape == (4, 9, 60)
    assert model.decoder.weight is model.encoder.embedding.weight


def test_padding_never_changes_a_texts_answer() -> None:
    torch.manual_seed(0)
    model = TextClassifier(AwdLstmSpec(vocab_size=60, emb=16, hidden=24, layers=3, n_classes=2)).eval()
    short = torch.randint(3, 60, (1, 5))
    long = torch.randint(3, 60, (1, 40))
    batch = torch.zeros(2, 40, dtype=torch.long)  # xxpad is 0
    batch[0, :5], batch[1] = short[0], long[0]
    with torch.inference_mode():
        alone, together = model(short), model(batch)
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


def test_a_language_models_encoder_starts_the_classifier() -> None:
    lm = LanguageModel(SPEC)
    classifier = TextClassifier(AwdLstmSpec(vocab_size=60, emb=16, hidden=24, layers=3, n_classes=2))
    classifier.encoder.load_state_dict(lm.encoder.state_dict())
    assert torch.equal(classifier.encoder.embedding.weight, lm.encoder.embedding.weight)


def test_a_language_model_carries_its_states_from_window_to_window_until_its_mode_changes() -> None:
    """Two windows read one after the other give what one window of both would (the LSTM state
    flows on); a mode change forgets it, and a classifier never carries."""
    torch.manual_seed(0)
    model = LanguageModel(SPEC).eval()
    tokens = torch.randint(3, 60, (2, 12))
    with torch.inference_mode():
        whole = model(tokens)
        model.eval()  # forget the state the call above left
        first, second = model(tokens[:, :5]), model(tokens[:, 5:])
        torch.testing.assert_close(torch.cat([first, second], 1), whole)
        model.eval()
        alone = model(tokens[:, 5:])  # no state: the second window without its context
    assert not torch.allclose(alone, second, atol=1e-4)
    assert not TextClassifier(AwdLstmSpec(60, 16, 24, 3, n_classes=2)).encoder.carry


def test_an_export_whose_token_axis_came_out_fixed_is_refused_not_published(tmp_path: Path) -> None:
    """torch 2.14 fixes the token axis of the second LSTM exported in one process at the example's
    length; that graph would refuse every other length. Exported twice in a fresh process, each
    must come out free or be refused by name, never fixed in silence."""
    import subprocess
    import sys

    script = f"""
import onnx, torch
from pathlib import Path
from serving.bundle.networks.awd_lstm import AwdLstmSpec, TextClassifier
from serving.bundle.onnx_export import to_onnx
for i in range(2):
    model = TextClassifier(AwdLstmSpec(50, 8, 16, 2, n_classes=2))
    path = Path({str(tmp_path)!r}) / f"{{i}}.onnx"
    try:
        to_onnx(model, torch.randint(3, 50, (2, 7)), path, input_name="tokens", max_length=64)
    except RuntimeError as err:
        print("refused", "must stay free" in str(err))
        continue
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    print("axes", [d.dim_param or d.dim_value for d in dims])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("axes", "refused"))]
    assert len(lines) == 2, result.stderr[-2000:]
    assert all(line in ("axes ['N', 'T']", "refused True") for line in lines), lines
