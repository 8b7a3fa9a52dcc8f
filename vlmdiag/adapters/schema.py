"""The schema of ``families.yaml`` (and of any families file a plugin adds), checked with pydantic:
an unknown key, a missing one or a value of the wrong type is a one-line
:class:`FamiliesFileError` naming the file, the family and the key path.

One family::

    qwen2_5_vl:
      model_types: [qwen2_5_vl]                 # config.json model_type values
      architectures: [Qwen2_5_VLForConditionalGeneration]
      box_coordinates: resized_pixels           # pixels | resized_pixels | grid_1000 | unit
      processor_images: flat                    # flat (default) | per_prompt: how a batch's images go
      modules: {decoder_layers, vision_blocks, projector, embed_tokens, final_norm, lm_head}
      config: {llm_layers: [keys], vision_layers: [keys], image_token_id: [keys],
               vision_start_id: [keys], vision_end_id: [keys]}     # the last two optional
      tokens: {image: "<|image_pad|>", vision_start: "<|vision_start|>", vision_end: "<|vision_end|>"}
      checkpoint_prefixes: [[on-disk prefix, canonical prefix], ...]
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmdiag.errors import VlmdiagError

BoxCoordinates = Literal["pixels", "resized_pixels", "grid_1000", "unit"]
#: How the family's processor takes a batch's images: one list in prompt order (``flat``), or one
#: list per prompt (``per_prompt``: Idefics3, SmolVLM and Gemma 3 read a flat list of several
#: images as one prompt's images).
ProcessorImages = Literal["flat", "per_prompt"]


class FamiliesFileError(VlmdiagError, ValueError):
    """A families file is malformed (the message names the file, the family and the key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Modules(_Strict):
    """In-memory module paths (transformers 5.x), also the canonical tensor-name prefixes."""

    decoder_layers: str
    vision_blocks: str
    projector: str
    embed_tokens: str
    final_norm: str
    lm_head: str


class ConfigKeys(_Strict):
    """Dotted ``config.json`` keys, the first one present wins."""

    llm_layers: list[str] = Field(min_length=1)
    vision_layers: list[str] = Field(min_length=1)
    image_token_id: list[str] = Field(min_length=1)
    vision_start_id: list[str] = []
    vision_end_id: list[str] = []


class Tokens(_Strict):
    """The token strings of the family's chat templates: the image placeholder (one per visual
    token after the processor expands it), and the markers around an image (not visual tokens)."""

    image: str
    vision_start: str | None = None
    vision_end: str | None = None


class Family(_Strict):
    model_types: list[str] = Field(min_length=1)
    architectures: list[str] = Field(min_length=1)
    box_coordinates: BoxCoordinates
    processor_images: ProcessorImages = "flat"
    modules: Modules
    config: ConfigKeys
    tokens: Tokens
    checkpoint_prefixes: list[tuple[str, str]] = []


def parse_families(text: str, source: str) -> dict[str, Family]:
    """The families of a YAML document.

    Raises:
        FamiliesFileError: not YAML, not a mapping of family name to family, or a family that
            breaks the schema (``source: family: key.path: what is wrong``).
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise FamiliesFileError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if not isinstance(raw, dict) or not raw:
        raise FamiliesFileError(f"{source}: expected a mapping of family name to its description")
    return {str(name): validate_family(str(name), spec, source) for name, spec in raw.items()}


def validate_family(name: str, spec, source: str) -> Family:
    """One family's description (an entry of ``families.yaml``, or what a plugin registered).

    Raises:
        FamiliesFileError: it breaks the schema (``source: family: key.path: what is wrong``).
    """
    try:
        return Family.model_validate(spec)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "(the family)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise FamiliesFileError(f"{source}: {name}: {path}: {first['msg']}{more}") from None
