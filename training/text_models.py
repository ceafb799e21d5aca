"""Text MRL on keras-hub encoders: a `BertBackbone` from a small config (no hub downloads), a
WordPiece vocabulary computed offline from the corpus, and the Matryoshka contrastive loss on
text pairs, evaluated by recall@k of the matching pair per prefix dim (MRL vs FF).

Run the Debian-descriptions benchmark (docs/text.md):

    python -m mrl_keras.training.text_models --out runs/text

Needs the `text` extra (`pip install 'mrl-keras[text]'`: keras-hub and tensorflow-text).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_keras.training.text_data import TextPairs, load_debian_descriptions

try:
    import keras_hub
except ImportError:  # the `text` extra
    keras_hub = None

RESERVED_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def _require_keras_hub() -> Any:
    if keras_hub is None:
        raise ImportError(
            "Text encoders need keras-hub and tensorflow-text: pip install 'mrl-keras[text]'"
        )
    return keras_hub


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The text encoder and its training (defaults: the docs/text.md run)."""

    d: int = 128
    nesting_dims: tuple[int, ...] | None = None  # None: mrl_keras.nesting_dims(d)
    mode: str = "mrl"  # "mrl": every prefix; "ff": the full dim only
    vocabulary_size: int = 8000
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 128
    intermediate_dim: int = 256
    query_length: int = 24
    sequence_length: int = 64
    temperature: float = 0.05
    batch_size: int = 128
    epochs: int = 3
    learning_rate: float = 1e-3
    seed: int = 0


def compute_vocabulary(texts: Sequence[str], size: int) -> list[str]:
    """A lowercase WordPiece vocabulary of `size` tokens from `texts`, offline and fast.

    The most frequent whole words (split as BERT's basic tokenizer does: on whitespace and
    punctuation), plus every character seen, alone and as a `##` continuation, so that a word
    outside the vocabulary becomes word pieces instead of `[UNK]`. (keras-hub's
    `compute_word_piece_vocabulary` learns sub-words too but took over 10 minutes on 24,000
    texts on 2 busy cores.)
    """
    import collections
    import re

    words: collections.Counter[str] = collections.Counter()
    for text in texts:
        words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    chars = sorted({c for word in words for c in word})
    pieces = RESERVED_TOKENS + chars + [f"##{c}" for c in chars]
    known = set(pieces)
    for word, _ in words.most_common():
        if len(pieces) >= size:
            break
        if word not in known:
            pieces.append(word)
            known.add(word)
    return pieces


def build_preprocessor(vocabulary: list[str], sequence_length: int) -> Any:
    """keras-hub's BERT preprocessor (WordPiece, `[CLS] ... [SEP]`, padding) for one length."""
    hub = _require_keras_hub()
    tokenizer = hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    return hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)


def tokenize(preprocessor: Any, texts: Sequence[str], batch: int = 1024) -> dict[str, np.ndarray]:
    """The backbone's inputs for `texts`, as int32 NumPy arrays."""
    import tensorflow as tf

    parts: dict[str, list[np.ndarray]] = {k: [] for k in INPUT_NAMES}
    for start in range(0, len(texts), batch):
        out = preprocessor(tf.constant(list(texts[start : start + batch])))
        for k in INPUT_NAMES:
            parts[k].append(np.asarray(out[k]).astype("int32"))
    return {k: np.concatenate(v) for k, v in parts.items()}


def build_text_encoder(config: TextConfig, vocabulary_size: int, d: int | None = None) -> Any:
    """`BertBackbone` (from `config`, random init) -> masked mean pool -> `Dense(d)`.

    The inputs are keras-hub's dict (`token_ids`, `segment_ids`, `padding_mask`) of any
    length up to `config.sequence_length`; the output is the embedding `(batch, d)`, the layer
    named `embedding`.
    """
    import keras

    hub = _require_keras_hub()
    backbone = hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        max_sequence_length=config.sequence_length,
        name="bert",
    )
    inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in INPUT_NAMES}
    sequence = backbone(inputs)["sequence_output"]
    mask = keras.ops.cast(inputs["padding_mask"], "bool")
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_pool")(sequence, mask=mask)
    z = keras.layers.Dense(d or config.d, name="embedding")(pooled)
    return keras.Model(inputs, z, name="text_encoder")


def token_ids_model(encoder: Any, sequence_length: int) -> Any:
    """`encoder` with one input, the token ids `(batch, sequence_length)` int32, for export.

    keras-hub's preprocessing cannot go into a stock-TF SavedModel (docs/text.md names the four
    tensorflow-text ops), so the exported signatures take what `tokenize` returns as
    `token_ids`: `segment_ids` are zeros (one segment) and `padding_mask` is `token_ids != 0`
    (`[PAD]` is id 0 in a BERT vocabulary), as the preprocessor makes them. The output layer is
    named `embedding`, so `mrl_keras.export.export_saved_model(model, base, nesting_dims=...)`
    writes `embed_{m}` per prefix, each taking `inputs` = token ids.
    """
    import keras

    if sequence_length < 2:
        raise ValueError(f"Expected sequence_length >= 2. Received: {sequence_length}")
    ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    z = encoder(
        {
            "token_ids": ids,
            "segment_ids": keras.ops.zeros_like(ids),
            "padding_mask": keras.ops.cast(keras.ops.not_equal(ids, 0), "int32"),
        }
    )
    z = keras.layers.Identity(name="embedding")(z)
    return keras.Model(ids, z, name="text_encoder_token_ids")


def embed(encoder: Any, inputs: dict[str, np.ndarray], batch: int = 512) -> np.ndarray:
    return np.asarray(encoder.predict(inputs, batch_size=batch, verbose=0))


def pair_recall(
    queries: np.ndarray,
    documents: np.ndarray,
    dims: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, dict[int, float]]:
    """recall@k of document `i` for query `i`, on each prefix (L2-normalised on its own).

    Returns:
        `{m: {k: recall}}`.
    """
    out: dict[int, dict[int, float]] = {}
    n = len(queries)
    for m in dims:
        q = queries[:, :m] / np.maximum(
            np.linalg.norm(queries[:, :m], axis=1, keepdims=True), 1e-12
        )
        doc = documents[:, :m]
        doc = doc / np.maximum(np.linalg.norm(doc, axis=1, keepdims=True), 1e-12)
        scores = q @ doc.T
        # Rank of the right document: how many score strictly higher.
        right = scores[np.arange(n), np.arange(n)]
        rank = (scores > right[:, None]).sum(axis=1)
        out[m] = {k: float(np.mean(rank < k)) for k in ks}
    return out


def train_text_pairs(
    train: TextPairs,
    test: TextPairs,
    config: TextConfig,
    vocabulary: list[str] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Trains the text encoder on (synopsis, long description) pairs and measures recall.

    `mode="mrl"` trains with `MatryoshkaContrastiveLoss` over every nesting dim, `mode="ff"`
    with the same loss on the full dim only (the fixed-feature baseline, evaluated on its
    truncated prefixes). Both towers share one encoder (`mrl_keras.matryoshka_fine_tune`).

    Returns:
        A summary: config, recall `{m: {k: value}}` on `test`, loss history, seconds.
    """
    import keras

    import mrl_keras

    if config.mode not in ("mrl", "ff"):
        raise ValueError(f"Expected mode 'mrl' or 'ff'. Received: mode={config.mode!r}")
    keras.utils.set_random_seed(config.seed)
    start = time.time()
    if vocabulary is None:
        vocabulary = compute_vocabulary(train.short + train.long, config.vocabulary_size)
    short_pre = build_preprocessor(vocabulary, config.query_length)
    long_pre = build_preprocessor(vocabulary, config.sequence_length)
    x_short, x_long = tokenize(short_pre, train.short), tokenize(long_pre, train.long)
    dims = tuple(config.nesting_dims or mrl_keras.nesting_dims(config.d))
    trained_dims = dims if config.mode == "mrl" else (config.d,)
    encoder = build_text_encoder(config, len(vocabulary))
    model = mrl_keras.matryoshka_fine_tune(
        encoder,
        trained_dims,
        temperature=config.temperature,
        optimizer=keras.optimizers.Adam(config.learning_rate),
    )
    prepared = time.time()
    history = model.fit(
        [x_short, x_long],
        None,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=verbose,
    )
    trained = time.time()
    queries = embed(encoder, tokenize(short_pre, test.short))
    documents = embed(encoder, tokenize(long_pre, test.long))
    recall = pair_recall(queries, documents, dims)
    return {
        "config": dataclasses.asdict(config),
        "vocabulary_size": len(vocabulary),
        "train_pairs": len(train),
        "test_pairs": len(test),
        "loss": [float(v) for v in history.history["loss"]],
        "recall": {str(m): {str(k): v for k, v in r.items()} for m, r in recall.items()},
        "seconds": {
            "prepare": round(prepared - start, 1),
            "train": round(trained - prepared, 1),
            "evaluate": round(time.time() - trained, 1),
        },
        "encoder": encoder,
    }


def _table(results: dict[str, dict[str, Any]], dims: Sequence[int]) -> str:
    lines = ["| dim | " + " | ".join(f"{name} R@1 | {name} R@10" for name in results) + " |"]
    lines.append("|---:|" + "---:|---:|" * len(results))
    for m in dims:
        cells = []
        for summary in results.values():
            r = summary["recall"][str(m)]
            cells += [f"{r['1']:.3f}", f"{r['10']:.3f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """MRL vs FF on Debian package descriptions; writes OUT/results.json and prints a table."""
    p = argparse.ArgumentParser(
        prog="python -m mrl_keras.training.text_models",
        description="MRL vs FF text retrieval: Debian package synopsis -> long description.",
    )
    p.add_argument("--out", required=True, help="folder for results.json")
    p.add_argument("--max-pairs", type=int, default=24000, help="pairs used (train + test)")
    p.add_argument("--test-pairs", type=int, default=2000, help="held-out pairs for recall@k")
    p.add_argument("--d", type=int, default=TextConfig.d)
    p.add_argument("--epochs", type=int, default=TextConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TextConfig.batch_size)
    p.add_argument("--modes", default="mrl,ff", help="comma-separated: mrl, ff")
    p.add_argument("--seed", type=int, default=TextConfig.seed, help="weights and batch order")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)
    pairs = load_debian_descriptions(max_pairs=args.max_pairs)
    train, test = pairs.split(args.test_pairs)
    print(f"{len(train)} train pairs, {len(test)} test pairs", file=sys.stderr)
    base = TextConfig(d=args.d, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    vocabulary = compute_vocabulary(train.short + train.long, base.vocabulary_size)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vocabulary.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")  # the client's tokenizer (build_preprocessor)
    results = {}
    for mode in args.modes.split(","):
        config = dataclasses.replace(base, mode=mode)
        summary = train_text_pairs(train, test, config, vocabulary, verbose=args.verbose)
        encoder = summary.pop("encoder")  # saved for `mrl export --model` (docs/text.md)
        token_ids_model(encoder, config.sequence_length).save(
            os.path.join(args.out, f"{mode}_token_ids.keras")
        )
        results[mode.upper()] = summary
        print(f"{mode}: {json.dumps(summary['recall'])} {summary['seconds']}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    import mrl_keras

    print(_table(results, mrl_keras.nesting_dims(args.d)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
