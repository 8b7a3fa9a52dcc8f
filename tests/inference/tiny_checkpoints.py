"""Tiny random checkpoints of seven families saved as a user has them: ``config.json``, safetensors
weights and the processor (image processor, tokenizer, chat template), built offline.

Families: Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision (SigLIP + Qwen2, anyres), SmolVLM and Idefics3
(image splitting, pixel shuffle), InternVL (InternViT + Qwen2, ``crop_to_patches`` tiles) and
Gemma 3 (SigLIP, soft tokens pooled to 16). Text model: hidden 64, 6 decoder layers (``paper``
regions 2/2/2), 4 query / 2 KV heads, vocab 512; a locally trained byte-level BPE tokenizer
(:data:`tiny_models.CORPUS`) holding the family's special tokens (and, for InternVL and Gemma 3,
the named image tokens their processors read from the tokenizer), so the config's image / marker
ids are the tokenizer's. Image processors are the PIL-backend ones (no torchvision) sized so an
image becomes at most 16-80 visual tokens.

The Qwen, LLaVA-OneVision, SmolVLM and InternVL processors of transformers 5.x need a video
processor, which needs torchvision; the saved folder has none (no ``video_preprocessor_config.json``),
so there ``AutoProcessor`` fails and :func:`vlmdiag.runtime.processor.load_processor` loads the
image-only subclass of the folder's ``processor_class``. Gemma 3's and Idefics3's processors take no
video processor and load with ``AutoProcessor``. The folder layout is the real checkpoint's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import tiny_models

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision", "smolvlm", "internvl", "gemma3", "idefics3")
LAYERS = 6

#: LLaVA-OneVision's chat template (Qwen2 turns, ``<image>`` then a newline before the text).
LLAVA_OV_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>\n"
    "{% else %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: SmolVLM's chat template as published (``User:<image>question<end_of_utterance>``).
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def bpe_tokenizer(special: list[str], **tokens) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on :data:`tiny_models.CORPUS` (vocab 400) whose first ids are
    ``special``; ``tokens`` names the eos/pad/bos tokens among them."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(tiny_models.CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(special), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=list(special[1:]),
                                   padding_side="left", **tokens)


def _ids(tokenizer, names) -> dict[str, int]:
    return {n: tokenizer.convert_tokens_to_ids(n) for n in names}


def _text(tokenizer, bos, eos, pad, **extra) -> dict:
    ids = _ids(tokenizer, (bos, eos, pad))
    return dict(tiny_models.TEXT, num_hidden_layers=LAYERS, bos_token_id=ids[bos], eos_token_id=ids[eos],
                pad_token_id=ids[pad], **extra)


def qwen25_parts(seed: int):
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = tiny_models.qwen25_processor()
    model = tiny_models.qwen25_model(processor.tokenizer, layers=LAYERS, seed=seed)
    return model, processor, Qwen2_5_VLForConditionalGeneration


def qwen3_parts(seed: int):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from vlmdiag.runtime.processor import image_only

    tokenizer = tiny_models.qwen_tokenizer()
    # 16-px patches, 2x2 merge: 32 px per visual token; at most 128x128 px -> 16 tokens
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 32 * 32, "longest_edge": 128 * 128},
                                               patch_size=16, temporal_patch_size=2, merge_size=2)
    processor = image_only(Qwen3VLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                             chat_template=tiny_models.QWEN_TEMPLATE)
    text, tokens = tiny_models._qwen_text(tokenizer, LAYERS, head_dim=16, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True})
    config = Qwen3VLConfig(text_config=text, vision_config=dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
        deepstack_visual_indexes=[1]), **tokens)
    torch.manual_seed(seed)
    return Qwen3VLForConditionalGeneration(config), processor, Qwen3VLForConditionalGeneration


def llava_onevision_parts(seed: int):
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionProcessor)
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil)

    from vlmdiag.runtime.processor import image_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tokenizer = bpe_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = LLAVA_OV_TEMPLATE
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    # SigLIP 32 px / 8-px patches: 16 tokens per tile; base tile + at most 2 tiles (+ newlines)
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32},
                                                      crop_size={"height": 32, "width": 32},
                                                      image_grid_pinpoints=pinpoints)
    processor = image_only(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=LLAVA_OV_TEMPLATE,
        num_image_tokens=16, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    ids = _ids(tokenizer, ("<image>", "<video>"))
    config = LlavaOnevisionConfig(
        text_config=dict(_text(tokenizer, "<|im_start|>", "<|im_end|>", "<|endoftext|>"), model_type="qwen2"),
        image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9")
    torch.manual_seed(seed)
    return (LlavaOnevisionForConditionalGeneration(config), processor, LlavaOnevisionForConditionalGeneration)


def _idefics3_family(seed: int, *, config_class, model_class, processor_class, image_processor_class,
                     bos: str, pad: str, template: str):
    """A tiny Idefics3-style model (Idefics3, SmolVLM): image splitting on, as in their own
    processors: the image resized to a 64-px longest edge, cut into 32x32 tiles plus the whole
    image; each tile 8x8 patches of 4 px, pixel shuffle 2 -> 16 tokens (a 336x224 image: 2x2
    tiles + global = 80 visual tokens in 5 runs)."""
    # the tile markers of the image splitting, as the tokenizers have them
    rows = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]
    special = [pad, bos, "<end_of_utterance>", "<fake_token_around_image>", "<global-img>", "<image>", *rows]
    tokenizer = bpe_tokenizer(special, bos_token=bos, eos_token="<end_of_utterance>", pad_token=pad)
    tokenizer.chat_template = template
    image_processor = image_processor_class(do_image_splitting=True, size={"longest_edge": 64},
                                            max_image_size={"longest_edge": 32})
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                                image_seq_len=16)
    config = config_class(
        text_config=dict(_text(tokenizer, bos, "<end_of_utterance>", pad), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=4))
    torch.manual_seed(seed)
    return model_class(config), processor, model_class


def smolvlm_parts(seed: int):
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from vlmdiag.runtime.processor import image_only

    return _idefics3_family(seed, config_class=SmolVLMConfig, model_class=SmolVLMForConditionalGeneration,
                            processor_class=image_only(SmolVLMProcessor),
                            image_processor_class=SmolVLMImageProcessorPil, bos="<|im_start|>",
                            pad="<|endoftext|>", template=SMOLVLM_TEMPLATE)


#: InternVL's chat template (Qwen2 turns; ``<IMG_CONTEXT>`` then a newline, which the processor
#: expands to ``<img>`` + ``<IMG_CONTEXT>`` x visual tokens + ``</img>``).
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% else %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def internvl_parts(seed: int):
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from vlmdiag.runtime.processor import image_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    # the processor reads the image markers from the tokenizer's named tokens, as InternVL's has them
    tokenizer = bpe_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              start_image_token="<img>", end_image_token="</img>",
                              context_image_token="<IMG_CONTEXT>", video_token="<video>")
    tokenizer.chat_template = INTERNVL_TEMPLATE
    # 32-px tiles of 4-px patches, pixel shuffle 0.5: 16 tokens per tile; crop_to_patches as
    # InternVL's own processor does (a 336x224 image: 2 tiles + the thumbnail = 48 visual tokens)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True,
                                               min_patches=1, max_patches=2)
    processor = image_only(InternVLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                              chat_template=INTERNVL_TEMPLATE, image_seq_length=16)
    config = InternVLConfig(
        text_config=dict(_text(tokenizer, "<|im_start|>", "<|im_end|>", "<|endoftext|>"), model_type="qwen2"),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=16,
        downsample_ratio=0.5, tie_word_embeddings=False,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=[32, 32], patch_size=[4, 4]))
    torch.manual_seed(seed)
    return InternVLForConditionalGeneration(config), processor, InternVLForConditionalGeneration


#: Gemma 3's chat template as published, less its system-prompt folding (``<start_of_image>`` is
#: the image placeholder; the processor expands it to ``<start_of_image>`` + soft tokens + ``<end_of_image>``).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == 'text' %}{{ item['text'] | trim }}"
    "{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def gemma3_parts(seed: int):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    special = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
               "<end_of_image>", "<image_soft_token>"]
    tokenizer = bpe_tokenizer(special, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                              boi_token="<start_of_image>", eoi_token="<end_of_image>",
                              image_token="<image_soft_token>")
    tokenizer.chat_template = GEMMA3_TEMPLATE
    # SigLIP 32 px / 4-px patches (64), average-pooled to 16 soft tokens per image
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=GEMMA3_TEMPLATE, image_seq_length=16)
    ids = _ids(tokenizer, ("<start_of_image>", "<end_of_image>", "<image_soft_token>"))
    text = _text(tokenizer, "<bos>", "<eos>", "<pad>", head_dim=16, sliding_window=512, query_pre_attn_scalar=16,
                 layer_types=["sliding_attention", "sliding_attention", "full_attention"] * (LAYERS // 3))
    config = Gemma3Config(
        text_config=text, mm_tokens_per_image=16, image_token_index=ids["<image_soft_token>"],
        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"], tie_word_embeddings=False,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=4))
    torch.manual_seed(seed)
    return Gemma3ForConditionalGeneration(config), processor, Gemma3ForConditionalGeneration


#: Idefics3's chat template as published (SmolVLM's, after Llama 3's ``<|begin_of_text|>``).
IDEFICS3_TEMPLATE = SMOLVLM_TEMPLATE.replace("<|im_start|>", "<|begin_of_text|>", 1)


def idefics3_parts(seed: int):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    return _idefics3_family(seed, config_class=Idefics3Config, model_class=Idefics3ForConditionalGeneration,
                            processor_class=Idefics3Processor, image_processor_class=Idefics3ImageProcessorPil,
                            bos="<|begin_of_text|>", pad="<|end_of_text|>", template=IDEFICS3_TEMPLATE)


PARTS = {"qwen2_5_vl": qwen25_parts, "qwen3_vl": qwen3_parts, "llava_onevision": llava_onevision_parts,
         "smolvlm": smolvlm_parts, "internvl": internvl_parts, "gemma3": gemma3_parts,
         "idefics3": idefics3_parts}


def save_checkpoint(family: str, folder: str | Path, seed: int = 0, *, parts=None) -> Path:
    """Build the tiny ``family`` model (random weights from ``seed``, spread init) and save it with
    its processor into ``folder``, as ``save_pretrained`` writes a real checkpoint. ``parts``: a
    ``PARTS[family](...)`` result to reuse (its model's matrices are re-drawn from ``seed``)."""
    model, processor, _ = parts or PARTS[family](seed)
    model = tiny_models.spread_init(model, seed=seed).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return folder


def save_recipe(family: str, root: str | Path) -> dict[str, Path]:
    """``{"origin", "base", "rl", "frozen_late"}``: four unrelated tiny ``family`` checkpoints
    under ``root`` (seeds 0-3; one config, tokenizer and processor), as the claim tests'
    ``runnable`` fixture has for the organism."""
    root, parts = Path(root), PARTS[family](0)
    return {name: save_checkpoint(family, root / name, seed, parts=parts)
            for seed, name in enumerate(("origin", "base", "rl", "frozen_late"))}
