"""Loading a checkpoint's processor, with an image-only fallback when torchvision is missing.

In transformers 5.x the Qwen2-VL / Qwen2.5-VL / Qwen3-VL processors require a video processor, and
every video processor needs torchvision. CPU machines without a working torchvision still need
the complete *image* behaviour (placeholder expansion, ``mm_token_type_ids``, chat template), so
:func:`load_processor` falls back to :class:`Qwen2_5_VLImageOnlyProcessor`, which is the stock
processor minus its video half. See ``notes/cpu-feasibility.md`` §2.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

from vlmdiag.errors import CheckpointError


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (no torchvision needed).

    It saves as ``processor_class: "Qwen2_5_VLProcessor"`` so the folder keeps the layout of a
    real checkpoint; a machine with torchvision loads it with ``AutoProcessor``.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.video_processor = None
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)

    def to_dict(self):
        out = super().to_dict()
        out["processor_class"] = "Qwen2_5_VLProcessor"
        return out


def load_processor(path: str | os.PathLike, *, trust_remote_code: bool = False):
    """Load the processor saved in a checkpoint folder.

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
        try:
            image_processor = AutoImageProcessor.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except Exception as error:
            raise CheckpointError(
                f"{path}: cannot load a processor ({type(auto_error).__name__}: {auto_error}); "
                f"the image-only fallback failed too ({type(error).__name__}: {error})"
            ) from error
        chat_template = getattr(tokenizer, "chat_template", None)
        template_file = path / "chat_template.jinja"
        if template_file.is_file():
            chat_template = template_file.read_text()
        return Qwen2_5_VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                            chat_template=chat_template)
