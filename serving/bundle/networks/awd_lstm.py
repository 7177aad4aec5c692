"""An AWD-LSTM-style text network (Merity et al., as ULMFiT uses it), for a language model and a
classifier on its encoder. In `serving/` because a bundle rebuilds it without the training kit.

The encoder: an embedding (with embedding dropout: whole words dropped), dropout on its output, and a
stack of LSTMs with dropout between them; the last layer's width equals the embedding's, so the
language model's decoder can share (tie) the embedding's weights. Dropout masks are the same at every
time step ("variational"), as in the paper. Weight dropout on the recurrent weights is left out: it
fights PyTorch's fused LSTM kernels and ONNX export, and the other dropouts carry the regularization.

The classifier pools the last layer's outputs three ways, never looking at padding: the state at the
last real token (padding is on the right, and an LSTM only reads leftwards, so real positions never
see it), and the max and the mean over real tokens only. A text's answer therefore does not depend on
what it is batched with.
"""

from __future__ import annotations

import torch
from torch import nn

from serving.bundle.networks.specs import AwdLstmSpec

__all__ = ["AwdLstmSpec", "LanguageModel", "TextClassifier", "TextEncoder", "build_text_network"]

PAD = 0  # serving.bundle.tokenizer.PAD, repeated to keep this module free of the tokenizer dependency


class VariationalDropout(nn.Module):
    """The same dropout mask for every time step of a sequence (N, T, C)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class TextEncoder(nn.Module):
    """With `carry` (a language model in training), each call starts from the LSTM states the last
    call ended with, detached: the loader's windows continue each other, so the model sees context
    far beyond one window, as AWD-LSTM trains. Any change of mode (`train()`, `eval()`) forgets them.
    A classifier reads whole texts and never carries."""

    def __init__(self, spec: AwdLstmSpec) -> None:
        super().__init__()
        self.carry = False
        self.states: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.embed_p = spec.embed_p
        self.embedding = nn.Embedding(spec.vocab_size, spec.emb, padding_idx=PAD)
        self.input_drop = VariationalDropout(spec.input_p)
        sizes = [spec.emb] + [spec.hidden] * (spec.layers - 1) + [spec.emb]
        self.rnns = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(spec.layers)
        )
        self.hidden_drops = nn.ModuleList(VariationalDropout(spec.hidden_p) for _ in range(spec.layers - 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T) ids → (N, T, emb) outputs of the last layer."""
        weight = self.embedding.weight
        if self.training and self.embed_p > 0:  # drop whole words: rows of the embedding
            keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            weight = weight * keep
        x = self.input_drop(nn.functional.embedding(tokens, weight, PAD))
        previous = self.states if self.carry and self.states and len(self.states[0][0][0]) == len(x) else None
        states = []
        for i, rnn in enumerate(self.rnns):
            x, (h, c) = rnn(x, previous[i] if previous else None)
            states.append((h.detach(), c.detach()))
            if i < len(self.hidden_drops):
                x = self.hidden_drops[i](x)
        if self.carry:
            self.states = states
        return x

    def train(self, mode: bool = True) -> TextEncoder:
        self.states = None
        return super().train(mode)


class LanguageModel(nn.Module):
    """Encoder + a decoder tied to the embedding: next-token logits (N, T, vocab)."""

    def __init__(self, spec: AwdLstmSpec) -> None:
        super().__init__()
        self.encoder = TextEncoder(spec)
        self.encoder.carry = True  # consecutive windows of the same streams: see TextEncoder
        self.output_drop = VariationalDropout(spec.output_p)
        self.decoder = nn.Linear(spec.emb, spec.vocab_size)
        self.decoder.weight = self.encoder.embedding.weight  # tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.output_drop(self.encoder(tokens)))


class TextClassifier(nn.Module):
    """Encoder + concat pooling over real tokens + a small head: class logits (N, classes)."""

    def __init__(self, spec: AwdLstmSpec, hidden: int = 50, dropout: float = 0.2) -> None:
        super().__init__()
        if spec.n_classes is None:
            raise ValueError("a classifier spec needs n_classes")
        self.encoder = TextEncoder(spec)
        self.head = nn.Sequential(
            nn.BatchNorm1d(3 * spec.emb),
            nn.Dropout(dropout),
            nn.Linear(3 * spec.emb, hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, spec.n_classes),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(tokens))

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T) ids → (N, 3 × emb): the last real step's output, then max and mean over real steps."""
        outputs = self.encoder(tokens)
        real = (tokens != PAD).unsqueeze(-1)  # (N, T, 1)
        count = real.sum(1).clamp_min(1)
        last = outputs.gather(1, (count - 1).unsqueeze(-1).expand(-1, 1, outputs.shape[-1])).squeeze(1)
        biggest = outputs.masked_fill(~real, -1e4).amax(1)  # not -inf: fp16 ONNX, and no NaN ever
        mean = (outputs * real).sum(1) / count
        return torch.cat([last, biggest, mean], dim=1)


def build_text_network(spec: AwdLstmSpec) -> nn.Module:
    return LanguageModel(spec) if spec.n_classes is None else TextClassifier(spec)
