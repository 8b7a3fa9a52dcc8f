"""Loading a checkpoint for inference: model, processor, adapter and image token, as one frozen value.

Device and dtype follow the checkpoint's size class: CUDA + bfloat16 when a GPU is present,
CPU + float32 otherwise (``notes/cpu-feasibility.md`` §6). ``trust_remote_code`` is refused unless
the caller opts in.
"""

from __future__ import annotations

import gc
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmdiag.adapters import Adapter, adapter_for
from vlmdiag.errors import CheckpointError, UsageError


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the measurements.

    Attributes:
        model: the ``...ForConditionalGeneration`` module, in eval mode.
        processor: the checkpoint's processor (``__call__`` and ``apply_chat_template``), or None
            for models built in memory without one (tests of architectures without a processor).
        adapter: the architecture family (module paths, config keys).
        config: the ``config.json`` dict the adapter was chosen from.
        image_token_id: id of the image placeholder token; visual tokens are the positions holding it.
        device: where the model lives.
        dtype: the parameter dtype.
        path: the checkpoint folder, or None for in-memory models.
    """

    model: Any
    processor: Any
    adapter: Adapter
    config: dict
    image_token_id: int
    device: torch.device
    dtype: torch.dtype
    path: str | None = None

    @property
    def tokenizer(self):
        """The processor's tokenizer (or the processor itself when it is a bare tokenizer)."""
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def num_layers(self) -> int:
        """Number of LLM decoder layers L."""
        return len(decoder_layers(self))


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return choose_device()


def choose_device(requested: str | torch.device | None = None, *,
                  cuda_available: bool | None = None) -> torch.device:
    """The device to compute on: ``requested`` when given, else ``cuda`` when a GPU is visible,
    else ``cpu``.

    Args:
        requested: a device or device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``), or None.
        cuda_available: whether CUDA can be used (default: ``torch.cuda.is_available()``).

    Raises:
        UsageError: ``requested`` is not a device string, or names CUDA where CUDA is not available.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested is None:
        return torch.device("cuda" if cuda_available else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise UsageError(f"device {requested!r} is not a torch device ({error})") from error
    if device.type == "cuda" and not cuda_available:
        raise UsageError(f"device {requested!r} asked for, but CUDA is not available in this process "
                         "(a CPU build of torch, no GPU, or CUDA_VISIBLE_DEVICES empty)")
    return device


#: Share of a GPU's free memory the weights may take before a model is split over the visible
#: GPUs: the rest is for activations, the KV cache and the attention measurement's blocks.
GPU_WEIGHT_SHARE = 0.8


@dataclass(frozen=True)
class Placement:
    """Where and how a model is loaded.

    Attributes:
        device: where inputs go (for a split model, the device of its first layers).
        dtype: parameter dtype.
        device_map: ``"auto"`` to split the model over the visible GPUs with accelerate (and CPU
            memory when they are full), None to load it whole onto ``device``.
    """

    device: torch.device
    dtype: torch.dtype
    device_map: str | None = None


def choose_placement(device: str | torch.device | None = None, dtype: torch.dtype | None = None, *,
                     weight_numel: int | None = None, gpu_free_bytes: int | None = None,
                     cuda_available: bool | None = None) -> Placement:
    """Device, dtype and split of a model load; a pure function of its arguments.

    bf16 on CUDA, fp32 on CPU (:func:`default_dtype`) unless ``dtype`` is given. On CUDA with no
    device index, a model whose weights (``weight_numel`` elements in ``dtype``) would take more
    than :data:`GPU_WEIGHT_SHARE` of ``gpu_free_bytes`` is split with ``device_map="auto"``;
    an explicit index (``"cuda:1"``) is always honoured as asked.

    TF32 is not switched on: on CUDA the models run in bf16, where it changes nothing, and the
    fp32 matmuls left are the rotary angles (``inv_freq @ position_ids``), which TF32 corrupts
    past position 2,048 (huggingface/transformers#48428).

    Raises:
        UsageError: see :func:`choose_device`.
    """
    target = choose_device(device, cuda_available=cuda_available)
    dtype = dtype or default_dtype(target)
    if (target.type == "cuda" and target.index is None and weight_numel is not None
            and gpu_free_bytes is not None and weight_numel * dtype.itemsize > GPU_WEIGHT_SHARE * gpu_free_bytes):
        return Placement(torch.device("cuda", 0), dtype, "auto")
    return Placement(target, dtype)


def weight_numel(path: str | os.PathLike) -> int | None:
    """Number of floating-point weight elements in a folder's safetensors files (headers only), or
    None when it has none or a header cannot be read (the load then reports the problem)."""
    from vlmdiag.checkpoints.safetensors_header import DTYPES, read_header

    files = sorted(Path(path).glob("*.safetensors"))
    try:
        entries = [e for f in files for e in read_header(f)[0].values()]
    except CheckpointError:
        return None
    numel = sum(math.prod(e.shape) for e in entries if DTYPES[e.dtype].is_floating_point)
    return numel or None


def evict_for(resident: dict[str, torch.device], target: torch.device) -> list[str]:
    """Keys of the resident models to free before loading onto ``target``: on CUDA every model on
    a GPU (one model resident at a time; a split model spans them all), on CPU none."""
    if target.type != "cuda":
        return []
    return [key for key, device in resident.items() if device.type == "cuda"]


class ResidentModels:
    """Loaded models by key (e.g. a checkpoint spec), loaded on first use.

    At most one model is resident on the GPUs at a time: loading another one there first drops
    this holder's reference to the one loaded, runs the garbage collector and returns the cached
    blocks to the driver (``torch.cuda.empty_cache``), so a later load finds the memory free.
    Memory is only freed if no one else still holds the model. On CPU models are kept.
    """

    def __init__(self, load: Any = None):
        self._load = load or load_model
        self._models: dict[str, LoadedModel] = {}

    def get(self, key: str, path: str | os.PathLike, **kwargs) -> LoadedModel:
        """The model of ``key``, loading ``path`` with ``load_model(path, **kwargs)`` if needed."""
        if key not in self._models:
            target = choose_device(kwargs.get("device"))
            evict = evict_for({k: m.device for k, m in self._models.items()}, target)
            if evict:
                self.release(*evict)
            self._models[key] = self._load(path, **kwargs)
        return self._models[key]

    def release(self, *keys: str) -> None:
        """Drop the models of ``keys`` and free their memory (if no one else holds them)."""
        for key in keys:
            self._models.pop(key, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def clear(self) -> None:
        """Drop every model and free their memory."""
        self.release(*self._models)

    def __contains__(self, key: str) -> bool:
        return key in self._models


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPU (the paper's setting), float32 on CPU (bf16 matmuls are slow and inexact there)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _gpu_free_bytes() -> int:
    """Free memory of the current CUDA device (bytes)."""
    return torch.cuda.mem_get_info()[0]


def get_module(root, dotted: str):
    """The submodule at a dotted path such as ``model.language_model.layers``.

    Raises:
        CheckpointError: a path component is missing (the adapter does not fit this model).
    """
    node = root
    for part in dotted.split("."):
        if not hasattr(node, part):
            raise CheckpointError(
                f"{type(root).__name__} has no module {dotted!r} (missing {part!r}); "
                "the architecture adapter does not match this model")
        node = getattr(node, part)
    return node


def decoder_layers(loaded: LoadedModel):
    """The ``nn.ModuleList`` of LLM decoder layers (adapter path ``decoder_layers``)."""
    return get_module(loaded.model, loaded.adapter.decoder_layers)


def _vocab_id(tokenizer, token: str) -> int | None:
    """The id of ``token`` in ``tokenizer``, or None when it is not in the vocabulary (an unknown
    token maps to the unk id or None: the id must map back to ``token``)."""
    candidate = tokenizer.convert_tokens_to_ids(token)
    if candidate is not None and tokenizer.convert_ids_to_tokens(int(candidate)) == token:
        return int(candidate)
    return None


def _image_token_id(adapter: Adapter, config: dict, processor, source: str) -> int:
    """The id of the visual token (repeated once per visual token): config.json's, checked against
    the processor's tokenizer.

    Raises:
        CheckpointError: the processor defines no image token, or its id differs from config.json's.
    """
    token_id = None
    try:
        token_id = adapter.image_token_id(config)
    except CheckpointError:
        pass
    tokenizer = getattr(processor, "tokenizer", processor) if processor is not None else None
    if tokenizer is not None:
        image_token = getattr(processor, "image_token", None)
        proc_id = None
        if isinstance(image_token, str):
            proc_id = _vocab_id(tokenizer, image_token)
        elif processor is not tokenizer:
            proc_id = getattr(processor, "image_token_id", None)
        if proc_id is not None and token_id is not None and int(proc_id) != token_id \
                and _vocab_id(tokenizer, adapter.image_token) == token_id:
            # the processor's image_token is the prompt placeholder it expands into markers and the
            # family's visual token (Gemma 3: <start_of_image> -> <start_of_image><image_soft_token>
            # x N<end_of_image>); the tokenizer agrees with config.json on the visual token itself
            proc_id = token_id
        if proc_id is None:
            raise CheckpointError(
                f"{source}: the processor ({type(processor).__name__}) defines no image token, so "
                "visual-token positions cannot be found; use the checkpoint's own multimodal "
                "processor (processor_config.json / preprocessor_config.json)")
        if token_id is not None and int(proc_id) != token_id:
            raise CheckpointError(
                f"{source}: image token id differs between config.json ({token_id}) and the "
                f"processor ({proc_id}); the checkpoint's processor does not belong to this model")
        token_id = int(proc_id)
    if token_id is None:
        raise CheckpointError(f"{source}: no image token id in config.json and no processor to ask")
    return token_id


def wrap_model(model, processor=None, *, path: str | None = None) -> LoadedModel:
    """Wrap an already built model (e.g. a tiny model made from a config) as a :class:`LoadedModel`.

    Raises:
        CheckpointError: unknown architecture, or no image token (see :func:`load_model`).
    """
    config = model.config.to_dict()
    source = f"{path}/config.json" if path else f"{type(model).__name__} config"
    adapter = adapter_for(config, source=source)
    token_id = _image_token_id(adapter, config, processor, source)
    param = next(model.parameters())
    return LoadedModel(model=model.eval(), processor=processor, adapter=adapter, config=config,
                       image_token_id=token_id, device=param.device, dtype=param.dtype, path=path)


def inference_parts(path: str | os.PathLike, *, trust_remote_code: bool = False):
    """What inference needs from a checkpoint folder besides the weights, checked without reading
    any weight: ``(config, adapter, processor, image_token_id)``. The pytest plugin calls it on
    every checkpoint before a claim runs, so a bad tokenizer is a usage error, not a claim error.

    Raises:
        CheckpointError: no ``config.json``; ``auto_map`` needs remote code and
            ``trust_remote_code`` is False; unknown architecture; no loadable processor; the
            processor or tokenizer has no image token.
    """
    from vlmdiag.runtime.processor import load_processor

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json; a checkpoint is a Hugging Face model folder")
    config = json.loads(config_file.read_text())
    if config.get("auto_map") and not trust_remote_code:
        raise CheckpointError(
            f"{config_file}: auto_map needs custom modelling code from the checkpoint; pass "
            "--trust-remote-code (trust_remote_code=True in Python) only if you trust its author")
    adapter = adapter_for(config, source=str(config_file))
    processor = load_processor(path, trust_remote_code=trust_remote_code)
    return config, adapter, processor, _image_token_id(adapter, config, processor, str(path))


def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, trust_remote_code: bool = False,
               attn_implementation: str = "sdpa") -> LoadedModel:
    """Load a local checkpoint folder for inference.

    Args:
        path: folder with ``config.json``, safetensors weights and the processor files.
        device: defaults to :func:`default_device`.
        dtype: defaults to :func:`default_dtype` (bf16 on GPU, fp32 on CPU).
        trust_remote_code: refused unless True (custom modelling code runs arbitrary Python).
        attn_implementation: the attention used for generation. The attention measurement swaps
            in its own function for the LLM layers only while it runs, so ``sdpa`` is fine.

    Returns:
        A :class:`LoadedModel` in eval mode.

    Raises:
        CheckpointError: no folder / no ``config.json``; ``auto_map`` needs remote code and
            ``trust_remote_code`` is False; unknown architecture; the processor or tokenizer has
            no image token.
    """
    from transformers import AutoModelForImageTextToText

    from vlmdiag.runtime.threads import configure_cpu_threads

    path = Path(path)
    config, adapter, processor, token_id = inference_parts(path, trust_remote_code=trust_remote_code)
    cuda = choose_device(device).type == "cuda"
    placement = choose_placement(device, dtype, weight_numel=weight_numel(path) if cuda else None,
                                 gpu_free_bytes=_gpu_free_bytes() if cuda else None)
    device, dtype = placement.device, placement.dtype
    if device.type == "cpu":
        configure_cpu_threads()  # once per process: the cores free now, not torch's one per core
    split = {"device_map": placement.device_map} if placement.device_map else {}
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation, **split)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the model ({type(error).__name__}: {error})") from error
    if split:  # accelerate placed the layers; inputs go where the embedding is
        device = model.get_input_embeddings().weight.device
    else:
        model.to(device)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    if getattr(tokenizer, "pad_token_id", None) is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, processor=processor, adapter=adapter, config=config,
                       image_token_id=token_id, device=device, dtype=dtype, path=str(path))
