"""Loading a checkpoint's processor, with an image-only fallback when torchvision is missing.

In transformers 5.x the processors of Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, SmolVLM and
InternVL require a video processor, and every video processor needs torchvision. CPU machines
without a working torchvision still need the complete *image* behaviour (placeholder expansion,
``mm_token_type_ids``, chat template), so :func:`load_processor` falls back to
:func:`image_only` of the checkpoint's processor class: the stock processor minus its video half.
See ``notes/cpu-feasibility.md`` §2.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import transformers
from transformers import AutoProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

from vlmdiag.errors import CheckpointError

_IMAGE_ONLY: dict[type, type] = {}
#: Processors whose ``apply_chat_template`` override only fills video defaults (frames, fps) from
#: the video processor: their image-only class uses ``ProcessorMixin``'s (checked in 5.23-5.24).
_VIDEO_DEFAULTS_ONLY_TEMPLATE = ("SmolVLMProcessor",)


def image_only(base: type) -> type:
    """The subclass of processor class ``base`` that has no video processor (no torchvision needed).

    Everything else is ``base``: placeholder expansion, ``apply_chat_template``, ``batch_decode``,
    ``from_pretrained`` (it loads the image processor and tokenizer only). Its ``__name__`` is
    ``base.__name__``, so it saves as ``processor_class: base.__name__`` and the folder keeps the
    layout of a real checkpoint (a machine with torchvision loads it with ``AutoProcessor``); its
    ``__qualname__`` is ``<base>ImageOnly``, a module attribute, so instances pickle. One class per
    ``base`` (cached).

    Raises:
        TypeError: ``base.__init__`` takes no ``video_processor`` (nothing to drop).
    """
    if base in _IMAGE_ONLY:
        return _IMAGE_ONLY[base]
    if "video_processor" not in inspect.signature(base.__init__).parameters:
        raise TypeError(f"{base.__name__} has no video processor to drop")

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.video_processor = None
        base.__init__(self, image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                      chat_template=chat_template, **kwargs)

    # the base signature minus video_processor: ProcessorMixin reads the sub-processors and the
    # settings to save (num_image_tokens, image_seq_len, ...) from the __init__ signature
    signature = inspect.signature(base.__init__)
    __init__.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name != "video_processor"])
    name = f"{base.__name__}ImageOnly"
    body = {"__init__": __init__, "__module__": __name__, "__qualname__": name,
            "__doc__": f"``{base.__name__}`` without its video processor (see :func:`image_only`)."}
    if base.__name__ in _VIDEO_DEFAULTS_ONLY_TEMPLATE:
        body["apply_chat_template"] = ProcessorMixin.apply_chat_template
    # named as ``base``: save_pretrained writes ``self.__class__.__name__`` as the processor_class of
    # processor_config.json and tokenizer_config.json; __qualname__ tells the two apart
    cls = type(base.__name__, (base,), body)
    globals()[name] = _IMAGE_ONLY[base] = cls
    return cls


#: The Qwen2.5-VL processor without its video half (the organism's processor on CPU machines).
Qwen2_5_VLImageOnlyProcessor = image_only(Qwen2_5_VLProcessor)


def _processor_class_name(path: Path) -> str | None:
    """The processor class a checkpoint folder names: the first ``processor_class`` that
    transformers knows in processor_config.json, preprocessor_config.json or tokenizer_config.json
    (older vlmdiag folders name ``Qwen2_5_VLImageOnlyProcessor`` in the last), else the one
    transformers maps the ``config.json`` ``model_type`` to."""
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        value = _json_object(path / name).get("processor_class")
        if isinstance(value, str) and hasattr(transformers, value):
            return value
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    return PROCESSOR_MAPPING_NAMES.get(_json_object(path / "config.json").get("model_type"))


def _json_object(file: Path) -> dict:
    """The JSON object in ``file``; ``{}`` when it is missing, unreadable or not an object."""
    try:
        value = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_processor(path: str | os.PathLike, *, trust_remote_code: bool = False):
    """Load the processor saved in a checkpoint folder.

    ``AutoProcessor`` first; when it fails (torchvision missing, or no video processor config) and
    the folder's processor class (:func:`_processor_class_name`) takes a video processor, the
    :func:`image_only` subclass of that class loads the image processor and tokenizer.

    Args:
        path: a local checkpoint folder.
        trust_remote_code: passed to ``AutoProcessor``; off unless the user opts in.

    Returns:
        A processor whose ``__call__`` and ``apply_chat_template`` accept PIL images.

    Raises:
        CheckpointError: the folder has no loadable processor or tokenizer.
    """
    path = Path(path)
    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as auto_error:  # torchvision missing, or no video processor config
        class_name = _processor_class_name(path)
        base = getattr(transformers, class_name, None) if class_name else None
        try:
            if base is None or "video_processor" not in inspect.signature(base.__init__).parameters:
                raise CheckpointError(f"no image-only fallback for processor class {class_name!r}")
            processor = _image_only_from_folder(image_only(base), path, trust_remote_code)
        except Exception as error:
            raise CheckpointError(
                f"{path}: cannot load a processor ({type(auto_error).__name__}: {auto_error}); "
                f"the image-only fallback failed too ({type(error).__name__}: {error})"
            ) from error
        return processor


def _image_only_from_folder(cls: type, path: Path, trust_remote_code: bool):
    """``cls`` (an :func:`image_only` class) from a folder: the image processor and tokenizer with
    their Auto classes, the settings ``processor_config.json`` keeps (``num_image_tokens``,
    ``image_seq_len``, ...) that ``cls`` takes, and the chat template (``chat_template.jinja``, else
    ``chat_template.json``, else ``processor_config.json``, else the tokenizer's)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        image_processor = AutoImageProcessor.from_pretrained(path)
    except ImportError:  # transformers 5.17 (seen): Auto insists on torchvision for the fast class
        image_processor = _named_image_processor(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    config_file = path / "processor_config.json"
    settings = json.loads(config_file.read_text()) if config_file.is_file() else {}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "image_processor", "tokenizer", "kwargs"}
    kwargs = {k: v for k, v in settings.items() if k in accepted}
    template_file, template_json = path / "chat_template.jinja", path / "chat_template.json"
    if template_file.is_file():
        kwargs["chat_template"] = template_file.read_text()
    elif template_json.is_file():  # the layout of checkpoints saved by transformers 4.4x
        kwargs["chat_template"] = json.loads(template_json.read_text()).get("chat_template")
    if not kwargs.get("chat_template"):
        kwargs["chat_template"] = getattr(tokenizer, "chat_template", None)
    return cls(image_processor=image_processor, tokenizer=tokenizer, **kwargs)


def _named_image_processor(path: Path):
    """The image processor the folder names (``image_processor_type`` in preprocessor_config.json,
    else in processor_config.json's ``image_processor``), by its transformers name without ``Fast``:
    where torchvision is missing, that name gives the PIL twin (transformers 5.17, seen).

    Raises:
        CheckpointError: the folder names no image processor that transformers has.
    """
    preprocessor = _json_object(path / "preprocessor_config.json")
    nested = _json_object(path / "processor_config.json").get("image_processor")
    for config in (preprocessor, nested if isinstance(nested, dict) else {}):
        kind = config.get("image_processor_type")
        cls = getattr(transformers, kind.removesuffix("Fast"), None) if isinstance(kind, str) else None
        if cls is not None:
            return cls.from_pretrained(path)
    raise CheckpointError(f"{path}: names no image processor class that transformers {transformers.__version__} has")

