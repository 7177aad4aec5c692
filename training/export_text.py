"""Export a trained text classifier (`train-kit sentiment`'s stage `clf`) as a bundle.

The network takes right-padded int64 token ids (N, T), both axes dynamic (T up to the bundle's
`max_tokens`); the tokenizer and the limit travel in `pipeline.pkl`, so the server tokenizes and cuts
exactly as training did. Published only if ONNX fp16 agrees with PyTorch fp32 on real validation
texts, together with a one-word text and one cut at the limit (the shortest and longest inputs): the
same label for ≥ 99.5 % of them and probabilities within `tolerance`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving import bundle as bundles
from serving.bundle import Manifest, Parity, TensorSpec, TextInput
from serving.bundle.networks.awd_lstm import AwdLstmSpec
from serving.bundle.onnx_export import to_onnx_fp16
from serving.bundle.pipeline import Network, Pipeline
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.scores import softmax
from serving.bundle.tasks.sentiment import SentimentPostprocess
from serving.bundle.text_preprocess import TextPreprocess
from serving.bundle.tokenizer import TextTokenizer
from training.data import ColumnSplitter, ItemList
from training.errors import DataError
from training.export import MIN_AGREEMENT, ExportError, library_versions
from training.sentiment import SentimentConfig

__all__ = ["export_text_stage", "parity_texts"]


def export_text_stage(
    state: dict[str, Any], name: str, models: Path, parity_items: int = 64, tolerance: float = 1e-2
) -> Path:
    """Publish a finished classifier checkpoint as the next version of `models/<name>`."""
    meta = state["meta"]
    spec = AwdLstmSpec(**meta["spec"])
    model = Network(spec, state["model"]).build()
    classes = list(meta["classes"])
    preprocess = TextPreprocess(TextTokenizer(meta["tokenizer"]), int(meta["max_tokens"]), truncate=True)
    pipeline = Pipeline(
        task="sentiment",
        preprocess=preprocess,
        network=Network.from_module(spec, model),
        postprocess=SentimentPostprocess(tuple(classes)),
    )
    texts = parity_texts(SentimentConfig.model_validate(meta["config"]), preprocess, parity_items)
    with bundles.staged(models, name) as staging:
        bundles.write_pipeline(pipeline, staging / bundles.PIPELINE)
        example = torch.from_numpy(preprocess(texts[:2]))
        to_onnx_fp16(
            model, example, staging / bundles.ONNX_MODEL, "logits", input_name="tokens",
            max_length=preprocess.max_tokens,
        )  # fmt: skip
        parity = check_text_parity(model, staging / bundles.ONNX_MODEL, preprocess, texts, tolerance)
        manifest = Manifest(
            name=name,
            version=0,  # publish() assigns the next free version
            task="sentiment",
            created=bundles.now(),
            labels=classes,
            text=TextInput(max_tokens=preprocess.max_tokens, truncate=preprocess.truncate),
            inputs=[TensorSpec(name="texts", shape=[-1], dtype="BYTES")],
            outputs=[TensorSpec(name="logits", shape=[-1, len(classes)], dtype="FP32")],
            parity=parity,
            libraries=library_versions(),
            files={},
        )
        return bundles.publish(staging, models, manifest)


def parity_texts(cfg: SentimentConfig, preprocess: TextPreprocess, n: int) -> list[str]:
    """Up to `n` validation texts of the run's data, a one-word text, and one over the token limit."""
    try:
        items = ItemList.from_text_csv(cfg.data, cfg.csv, cfg.text_col)
    except DataError as err:
        raise DataError(
            f"the parity check reads validation texts from the run's data at {cfg.data}, and could not: "
            f"{err}. Export from the folder the run was started in."
        ) from err
    _, valid_rows = ColumnSplitter(cfg.valid_col)(items)
    valid = [str(items.items[i]) for i in valid_rows]
    longest = " ".join(valid or ["word"])
    while len(preprocess.tokenizer.encode([longest])[0]) <= preprocess.max_tokens:
        longest = f"{longest} {longest}"
    return [*valid[: max(0, n - 2)], "good", longest]


def check_text_parity(
    model: nn.Module, onnx_path: Path, preprocess: TextPreprocess, texts: list[str], tolerance: float
) -> Parity:
    """ONNX fp16 against PyTorch fp32, each text alone and all in one padded batch."""
    batch = preprocess(texts)
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(batch)).float().numpy()
    runtime = OnnxRuntime(onnx_path)
    batched = runtime.run(batch)
    alone = np.concatenate([runtime.run(preprocess([text])) for text in texts])
    want = softmax(expected)
    gaps, agreements = [], []
    for actual in (batched, alone):
        got = softmax(actual)
        gaps.append(float(np.abs(want - got).max()))
        agreements.append(float(np.mean(want.argmax(1) == got.argmax(1))))
    agreement, gap = min(agreements), max(gaps)
    if agreement < MIN_AGREEMENT:
        raise ExportError(
            f"ONNX fp16 gives another label than PyTorch fp32 for {1 - agreement:.1%} of {len(texts)} "
            f"validation texts (at most {1 - MIN_AGREEMENT:.1%} may differ)"
        )
    if gap > tolerance:
        raise ExportError(
            f"ONNX fp16 disagrees with PyTorch fp32 on {len(texts)} validation texts: "
            f"max probability difference {gap:.2e} (tolerance {tolerance:.0e})"
        )
    return Parity(
        tolerance=tolerance, max_abs_diff=gap, agreement=agreement, items=len(texts), measure="probability"
    )
