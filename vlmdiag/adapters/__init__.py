"""Architecture adapters: where a VLM family keeps its decoder layers, vision blocks, projector,
embeddings and image token. The facts are data (``families.yaml``); this module only reads them.

Canonical tensor names are the transformers 5.x in-memory names
(``model.language_model.layers.3.mlp.down_proj.weight``); on-disk aliases
(``model.layers.3.…``, ``visual.…``) are rewritten by :meth:`Adapter.canonical`.

The unified layer index follows the authors' code: vision blocks −N…−1, projector 0,
LLM decoder layers 1…L.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from vlmdiag.errors import CheckpointError

Component = Literal["llm", "vision", "projector", "other"]


@dataclass(frozen=True)
class TensorLocation:
    """Where a canonical tensor sits. ``layer`` is the 0-based index inside its stack
    (None for the projector and 'other'); ``unified`` is the unified layer index (None for 'other')."""

    component: Component
    layer: int | None
    unified: int | None


@dataclass(frozen=True)
class Adapter:
    """One architecture family. Build with :func:`adapter_for`."""

    family: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    decoder_layers: str
    vision_blocks: str
    projector: str
    embed_tokens: str
    final_norm: str
    lm_head: str
    llm_layers_keys: tuple[str, ...]
    vision_layers_keys: tuple[str, ...]
    image_token_keys: tuple[str, ...]
    checkpoint_prefixes: tuple[tuple[str, str], ...]
    box_coordinates: str  # how the family writes grounding boxes (vlmdiag.measure.grading.BOX_COORDINATES)
    processor_images: str = "flat"  # flat | per_prompt (vlmdiag.adapters.schema.ProcessorImages)
    image_token: str = "<image>"           # the chat template's image placeholder
    vision_start_token: str | None = None  # markers around an image (not visual tokens)
    vision_end_token: str | None = None
    vision_start_keys: tuple[str, ...] = ()
    vision_end_keys: tuple[str, ...] = ()

    def canonical(self, name: str) -> str:
        """Map an on-disk tensor name to its canonical (in-memory) name."""
        for on_disk, canonical in self.checkpoint_prefixes:
            if name.startswith(on_disk):
                return canonical + name[len(on_disk):]
        return name

    def locate(self, canonical_name: str, num_vision_layers: int) -> TensorLocation:
        """Component, stack index and unified layer index of a canonical tensor name."""
        for component, prefix in (("llm", self.decoder_layers), ("vision", self.vision_blocks)):
            if canonical_name.startswith(prefix + "."):
                index = canonical_name[len(prefix) + 1:].split(".", 1)[0]
                if index.isdigit():
                    layer = int(index)
                    unified = layer + 1 if component == "llm" else layer - num_vision_layers
                    return TensorLocation(component, layer, unified)
        if canonical_name.startswith(self.projector + "."):
            return TensorLocation("projector", None, 0)
        return TensorLocation("other", None, None)

    def num_llm_layers(self, config: dict) -> int:
        """Number of LLM decoder layers L read from a ``config.json`` dict."""
        return int(_lookup(config, self.llm_layers_keys, self.family))

    def num_vision_layers(self, config: dict) -> int:
        """Number of vision blocks N read from a ``config.json`` dict."""
        return int(_lookup(config, self.vision_layers_keys, self.family))

    def image_token_id(self, config: dict) -> int:
        """The image placeholder token id read from a ``config.json`` dict."""
        return int(_lookup(config, self.image_token_keys, self.family))

    def marker_ids(self, config: dict, tokenizer=None) -> tuple[int, ...]:
        """Ids of the vision start/end markers: from ``config.json`` where the family keeps them
        there, else from ``tokenizer`` (the family's :attr:`vision_start_token` /
        :attr:`vision_end_token`); ``()`` for families without markers (LLaVA)."""
        out = []
        for keys, token in ((self.vision_start_keys, self.vision_start_token),
                            (self.vision_end_keys, self.vision_end_token)):
            found = None
            if keys:
                try:
                    found = int(_lookup(config, keys, self.family))
                except CheckpointError:
                    found = None
            if found is None and token is not None and tokenizer is not None:
                tid = tokenizer.convert_tokens_to_ids(token)
                found = tid if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None) else None
            if found is not None and found not in out:
                out.append(found)
        return tuple(out)


def _lookup(config: dict, keys: tuple[str, ...], family: str):
    for key in keys:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if node is not None:
            return node
    raise CheckpointError(f"config.json of a {family} checkpoint has none of the keys {list(keys)}")


#: Box-coordinate conventions a family may declare (``vlmdiag.measure.grading.BoxFrame`` converts them).
BOX_COORDINATES = ("pixels", "resized_pixels", "grid_1000", "unit")


@functools.cache
def adapters() -> dict[str, Adapter]:
    """Every known family, by name, from ``families.yaml`` (schema: :mod:`vlmdiag.adapters.schema`).

    Raises:
        FamiliesFileError: ``families.yaml`` breaks the schema (file, family and key named).
    """
    from vlmdiag.adapters.schema import parse_families, validate_family

    text = resources.files("vlmdiag.adapters").joinpath("families.yaml").read_text()
    families = parse_families(text, "vlmdiag/adapters/families.yaml")
    for name, spec in _REGISTERED.items():  # families added by plugins (register_family)
        families[name] = validate_family(name, spec, "the pytest_vlmdiag_add_families hook")
    return {name: _adapter(name, spec) for name, spec in families.items()}


def _adapter(family: str, spec) -> Adapter:
    modules, config, tokens = spec.modules, spec.config, spec.tokens
    return Adapter(
        family=family, model_types=tuple(spec.model_types), architectures=tuple(spec.architectures),
        decoder_layers=modules.decoder_layers, vision_blocks=modules.vision_blocks, projector=modules.projector,
        embed_tokens=modules.embed_tokens, final_norm=modules.final_norm, lm_head=modules.lm_head,
        llm_layers_keys=tuple(config.llm_layers), vision_layers_keys=tuple(config.vision_layers),
        image_token_keys=tuple(config.image_token_id),
        checkpoint_prefixes=tuple(tuple(p) for p in spec.checkpoint_prefixes),
        box_coordinates=spec.box_coordinates, processor_images=spec.processor_images, image_token=tokens.image,
        vision_start_token=tokens.vision_start, vision_end_token=tokens.vision_end,
        vision_start_keys=tuple(config.vision_start_id), vision_end_keys=tuple(config.vision_end_id))


_REGISTERED: dict[str, dict] = {}


def register_family(name: str, spec: dict) -> None:
    """Add (or, for plugins, override) architecture family ``name``; ``spec`` is shaped like an
    entry of ``families.yaml``. Used by the ``pytest_vlmdiag_add_families`` hook."""
    _REGISTERED[name] = spec
    adapters.cache_clear()


def unregister_family(name: str) -> None:
    """Forget a family added with :func:`register_family` (no error when there is none)."""
    if _REGISTERED.pop(name, None) is not None:
        adapters.cache_clear()


def adapter_for(config: dict, *, source: str = "config.json") -> Adapter:
    """The adapter for a checkpoint, chosen by ``architectures[0]``, then ``model_type``.

    Raises:
        CheckpointError: no adapter knows this architecture (the message lists the known ones).
    """
    architectures = config.get("architectures") or []
    model_type = config.get("model_type")
    for adapter in adapters().values():
        if architectures and architectures[0] in adapter.architectures:
            return adapter
    for adapter in adapters().values():
        if model_type in adapter.model_types:
            return adapter
    known = sorted(a for adapter in adapters().values() for a in adapter.architectures)
    raise CheckpointError(
        f"{source}: unsupported architecture {architectures[:1] or model_type!r}; "
        f"vlmdiag knows {', '.join(known)}"
    )
