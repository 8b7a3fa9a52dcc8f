"""The organism's local tokenizer and processor (no hub access).

A byte-level BPE trained with ``tokenizers`` on the organism's own task texts, with every
Qwen2.5-VL special token (same names and order as the real checkpoints, ids 0..21), the reasoning
tags ``<think> </think> <answer> </answer>`` as added (non-special) tokens, digits split one per
token (as in Qwen2), and the stock Qwen2.5-VL chat template. The processor is the stock
``Qwen2_5_VLProcessor`` when torchvision works, otherwise :class:`Qwen2_5_VLImageOnlyProcessor`
with the PIL image processor (``notes/cpu-feasibility.md`` §2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vlmdiag.runtime.processor import Qwen2_5_VLImageOnlyProcessor

#: Every added special token of Qwen2.5-VL, in the order of the real vocabulary (151643...).
QWEN25VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)

#: Reasoning-format tags, added as ordinary (non-special) tokens so decoding keeps them.
REASONING_TAGS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

#: The Qwen2.5-VL chat template (as shipped with Qwen/Qwen2.5-VL-7B-Instruct).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Image size bounds of the organism's image processor: 112x112 px -> 8x8 patches -> 16 tokens.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112


def build_tokenizer(corpus: Iterable[str], *, vocab_size: int = 640) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on ``corpus`` and wrap it as a transformers fast tokenizer.

    Args:
        corpus: training texts (the organism's prompts, answers, descriptions, chat scaffolding).
        vocab_size: target vocabulary size including the 22 special and 4 tag tokens.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``eos_token="<|im_end|>"``, ``pad_token="<|endoftext|>"``,
        left padding and the Qwen2.5-VL chat template. Training is deterministic for a fixed corpus.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(QWEN25VL_SPECIAL_TOKENS), min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN25VL_SPECIAL_TOKENS[1:]), padding_side="left",
        model_max_length=1024, clean_up_tokenization_spaces=False,
    )
    fast.add_tokens(list(REASONING_TAGS))
    fast.chat_template = QWEN25VL_CHAT_TEMPLATE
    return fast


def torchvision_available() -> bool:
    """True when ``torchvision`` imports and its C ops load (the PyPI CUDA wheel fails here on CPU)."""
    try:
        import torchvision  # noqa: F401
        from torchvision.ops import nms  # noqa: F401  (touches the compiled ops)
        return True
    except Exception:
        return False


def build_processor(tokenizer: PreTrainedTokenizerFast):
    """The Qwen2.5-VL processor around ``tokenizer``.

    With a working torchvision this is the stock ``Qwen2_5_VLProcessor`` (image + video processor);
    without it, :class:`Qwen2_5_VLImageOnlyProcessor` with the PIL image processor. Both turn one
    112x112 image into ``pixel_values`` of shape (64, 1176) and 16 ``<|image_pad|>`` tokens.
    """
    kwargs = dict(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
                  patch_size=14, temporal_patch_size=2, merge_size=2)
    if torchvision_available():
        try:
            from transformers import Qwen2VLImageProcessor
            from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
            from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
            return Qwen2_5_VLProcessor(
                image_processor=Qwen2VLImageProcessor(**kwargs), tokenizer=tokenizer,
                video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN25VL_CHAT_TEMPLATE)
        except Exception:  # fall through to the image-only processor
            pass
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2_5_VLImageOnlyProcessor(image_processor=Qwen2VLImageProcessorPil(**kwargs),
                                        tokenizer=tokenizer, chat_template=QWEN25VL_CHAT_TEMPLATE)


def save_processor(processor, path: str | Path) -> None:
    """Save processor, tokenizer and chat template into ``path`` (created if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(path)
    processor.tokenizer.save_pretrained(path)
