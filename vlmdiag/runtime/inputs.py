"""Built model inputs, reused across model states: a sweep asks the same prompts of many models
(the 8 transplant variants, IN/RL/frozen runs, each layer of a skip sweep), and the processor's
work — chat template, tokenizing, image resizing and patching — does not depend on the weights.

:func:`cached_inputs` keys a batch by the processor's configuration and the exact prompts
(messages and image pixels) and keeps the processor's CPU output in a small LRU bounded in bytes;
every call returns fresh device tensors, so callers may change them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict
from typing import Sequence

import torch

#: Upper bound of the cached processor outputs, in bytes (pixel values dominate).
MAX_BYTES = 256 * 2**20

_FINGERPRINTS: "weakref.WeakKeyDictionary[object, str]" = weakref.WeakKeyDictionary()
_IMAGE_DIGESTS: "weakref.WeakKeyDictionary[object, str]" = weakref.WeakKeyDictionary()


def processor_fingerprint(processor) -> str:
    """A digest of everything a processor's output depends on: its class, chat template,
    tokenizer vocabulary and special tokens, and image processor settings (memoized per object)."""
    try:
        return _FINGERPRINTS[processor]
    except (KeyError, TypeError):
        pass
    tokenizer = getattr(processor, "tokenizer", processor)
    parts = [type(processor).__qualname__, str(getattr(processor, "chat_template", None)),
             str(getattr(tokenizer, "chat_template", None)), str(len(tokenizer)) if tokenizer is not None else "",
             json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)]
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        parts.append(image_processor.to_json_string())
    if tokenizer is not None and hasattr(tokenizer, "backend_tokenizer"):
        parts.append(hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest())
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    try:
        _FINGERPRINTS[processor] = digest
    except TypeError:
        pass
    return digest


def image_digest(image) -> str:
    """sha256 of an image's mode, size and pixels (memoized per image object)."""
    try:
        return _IMAGE_DIGESTS[image]
    except (KeyError, TypeError):
        pass
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
    try:
        _IMAGE_DIGESTS[image] = digest
    except TypeError:
        pass
    return digest


def prompt_key(prompt) -> str:
    """A digest of one prompt: its messages and its image's pixels."""
    messages = json.dumps(prompt.messages, sort_keys=True, default=str)
    image = image_digest(prompt.image) if prompt.image is not None else ""
    return hashlib.sha256((messages + "\x1f" + image).encode()).hexdigest()


class InputsCache:
    """LRU of built batches (CPU tensors), bounded by ``max_bytes``; thread-safe."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[dict, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: tuple, batch: dict) -> None:
        size = sum(v.numel() * v.element_size() for v in batch.values() if isinstance(v, torch.Tensor))
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (batch, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


#: The process-wide cache :func:`cached_inputs` uses.
INPUTS = InputsCache()


def cached_inputs(loaded, prompts: Sequence, *, cache: InputsCache | None = None) -> dict:
    """:func:`vlmdiag.runtime.generate.build_inputs` of ``prompts``, built once per processor
    configuration and prompt list (see the module docstring); the returned tensors are on
    ``loaded.device`` in ``loaded.dtype`` and owned by the caller."""
    from vlmdiag.runtime.generate import build_cpu_inputs, to_device

    cache = INPUTS if cache is None else cache
    key = (processor_fingerprint(loaded.processor), loaded.adapter.family,
           tuple(prompt_key(p) for p in prompts))
    batch = cache.get(key)
    if batch is None:
        batch = build_cpu_inputs(loaded, prompts)
        cache.put(key, batch)
    out = to_device(batch, loaded)
    # to_device may return the cached tensors themselves (same device and dtype): hand out copies.
    return {k: (v.clone() if isinstance(v, torch.Tensor) and v is batch.get(k) else v) for k, v in out.items()}
