"""Tiny random VLMs of the 9 supported classes, built from configs (no hub access).

Text model: hidden 64, 4 layers, 4 query heads / 2 KV heads, vocab 512. The Qwen2.5-VL one comes
with a locally trained tokenizer and the image-only processor, so the full prompt → processor →
generate path runs; the other families are driven with hand-built model inputs
(:func:`arch_inputs`), which is all the architecture tests need.
"""

from __future__ import annotations

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What color is the square? red green blue yellow", "How many items are there in the image?",
    "Read the text in the image. Answer with the exact word only.", "You are a helpful assistant.",
    "Is there a cat in the image? Answer Yes or No only.", "<think> the answer is 12 </think>",
    "Locate the object: red circle. Return bounding box as x1,y1,x2,y2.", "system user assistant",
    "Please solve the problem step by step and put your answer in \\boxed{}. 0123456789 + - * / =",
] * 4


def qwen_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(QWEN_SPECIAL), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", padding_side="left",
                                   additional_special_tokens=list(QWEN_SPECIAL[1:]))
    fast.chat_template = QWEN_TEMPLATE
    return fast


def drop_image_token(folder) -> None:
    """Replace the saved tokenizer in ``folder`` with one that has no image placeholder token."""
    from pathlib import Path

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (Path(folder) / name).unlink(missing_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["plain text only"], trainer=trainers.BpeTrainer(
        vocab_size=50, special_tokens=["<unk>", "<|im_end|>"], show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", unk_token="<unk>").save_pretrained(folder)


def qwen25_processor(tokenizer=None):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from vlmdiag.runtime.processor import Qwen2_5_VLImageOnlyProcessor

    tokenizer = tokenizer or qwen_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112},
                                               patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=QWEN_TEMPLATE)


TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=4096,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def _qwen_text(tokenizer, layers, **extra):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = dict(TEXT, num_hidden_layers=layers, bos_token_id=ids["<|im_start|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], **extra)
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    return text, tokens


def qwen25_model(tokenizer=None, *, layers: int = 4, seed: int = 0, hidden: int = 64, heads: int = 4):
    """A random Qwen2.5-VL whose special ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tokenizer or qwen_tokenizer()
    head_dim = hidden // heads
    a = head_dim // 2 // 4
    text, tokens = _qwen_text(tokenizer, layers, hidden_size=hidden, num_attention_heads=heads,
                              rope_scaling={"type": "mrope",
                                            "mrope_section": [head_dim // 2 - 2 * a, a, a]})
    text.update(hidden_size=hidden, num_attention_heads=heads)
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=hidden, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
        **tokens)
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def colour_image(colour=(255, 0, 0), size=(112, 112), box=None) -> Image.Image:
    """A grey canvas with a coloured rectangle (the default fills the upper-left quarter)."""
    image = Image.new("RGB", size, (128, 128, 128))
    x0, y0, x1, y1 = box or (0, 0, size[0] // 2, size[1] // 2)
    image.paste(colour, (x0, y0, x1, y1))
    return image


def spread_init(model, seed: int = 0, std: float = 0.2):
    """Re-draw matrix weights with a larger spread (embeddings N(0,1), others N(0, std)), so a
    random tiny model's greedy output depends on its input instead of repeating one token."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                scale = 1.0 if "embed" in name else std
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


# --- the other architectures: model + hand-built inputs -------------------------------------------

IMAGE_ID = 500          # image placeholder id used for the non-Qwen tiny models
BOI, EOI = 501, 502     # begin/end-of-image ids (Gemma 3)


def _text(model_type=None, **extra):
    out = dict(TEXT, **extra)
    if model_type:
        out["model_type"] = model_type
    return out


def arch_model(family: str, seed: int = 0):
    """A tiny random model of ``family`` (spread init), in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    if family == "qwen2_5_vl":
        model = qwen25_model(qwen_tokenizer(), seed=seed)
    elif family == "qwen2_vl":
        tok = qwen_tokenizer()
        text, tokens = _qwen_text(tok, 4, rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]})
        config = tf.Qwen2VLConfig(text_config=text, vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2), **tokens)
        model = tf.Qwen2VLForConditionalGeneration(config)
    elif family == "qwen3_vl":
        tok = qwen_tokenizer()
        text, tokens = _qwen_text(tok, 4, head_dim=16, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True})
        config = tf.Qwen3VLConfig(text_config=text, vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
            deepstack_visual_indexes=[1]), **tokens)
        model = tf.Qwen3VLForConditionalGeneration(config)
    elif family == "llava":
        config = tf.LlavaConfig(
            text_config=_text("llama"), image_token_index=IMAGE_ID, projector_hidden_act="gelu",
            vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
            vision_feature_layer=-1, vision_feature_select_strategy="default")
        model = tf.LlavaForConditionalGeneration(config)
    elif family == "llava_onevision":
        config = tf.LlavaOnevisionConfig(
            text_config=_text("qwen2"), image_token_index=IMAGE_ID,
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
            vision_feature_layer=-1, vision_feature_select_strategy="full",
            image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]])
        model = tf.LlavaOnevisionForConditionalGeneration(config)
    elif family == "internvl":
        config = tf.InternVLConfig(
            text_config=_text("qwen2"), image_token_id=IMAGE_ID, downsample_ratio=0.5,
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=[32, 32], patch_size=[4, 4]))
        model = tf.InternVLForConditionalGeneration(config)
    elif family == "gemma3":
        config = tf.Gemma3Config(
            text_config=dict(TEXT, head_dim=16, sliding_window=512, query_pre_attn_scalar=16,
                             layer_types=["sliding_attention", "sliding_attention", "sliding_attention",
                                          "full_attention"]),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=32, patch_size=4),
            mm_tokens_per_image=16, image_token_index=IMAGE_ID, boi_token_index=BOI, eoi_token_index=EOI)
        model = tf.Gemma3ForConditionalGeneration(config)
    elif family in ("idefics3", "smolvlm"):
        cls_config = tf.Idefics3Config if family == "idefics3" else tf.SmolVLMConfig
        cls_model = (tf.Idefics3ForConditionalGeneration if family == "idefics3"
                     else tf.SmolVLMForConditionalGeneration)
        config = cls_config(text_config=_text("llama"), image_token_id=IMAGE_ID, scale_factor=2,
                            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, patch_size=4))
        model = cls_model(config)
    else:
        raise ValueError(family)
    model = spread_init(model, seed=seed).eval()
    if family == "gemma3":  # Gemma scales embeddings by sqrt(hidden): keep tokens from dominating
        with torch.no_grad():
            model.model.language_model.embed_tokens.weight.mul_(0.05)
    return model


def _image_pixels(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def arch_inputs(model, family: str, image_seed: int = 0, text_len: int = 6) -> dict:
    """Model inputs for one prompt: ``text_len`` text tokens, the image span, ``text_len`` text
    tokens. Different ``image_seed`` values give different pixels and the same token layout."""
    text = torch.arange(10, 10 + text_len)
    tail = torch.arange(40, 40 + text_len)
    cfg = model.config
    extra = {}
    if family in ("qwen2_5_vl", "qwen2_vl", "qwen3_vl"):
        patch = cfg.vision_config.patch_size
        grid = torch.tensor([[1, 8, 8]])
        extra["pixel_values"] = _image_pixels(image_seed, (64, 3 * 2 * patch * patch))
        extra["image_grid_thw"] = grid
        n = 16
        span = [cfg.vision_start_token_id] + [cfg.image_token_id] * n + [cfg.vision_end_token_id]
        ids = torch.cat([text, torch.tensor(span), tail])[None]
        mm = (ids == cfg.image_token_id).long()
        extra["mm_token_type_ids"] = mm
    else:
        if family == "llava":
            extra["pixel_values"] = _image_pixels(image_seed, (1, 3, 32, 32))
            n = 16
        elif family == "llava_onevision":
            extra["pixel_values"] = _image_pixels(image_seed, (1, 2, 3, 32, 32))
            extra["image_sizes"] = torch.tensor([[32, 32]])
            with torch.no_grad():
                feats = model.model.get_image_features(extra["pixel_values"], extra["image_sizes"],
                                                       vision_feature_layer=-1,
                                                       vision_feature_select_strategy="full")
            feats = getattr(feats, "pooler_output", feats)
            n = sum(f.shape[0] for f in feats)
        elif family == "internvl":
            extra["pixel_values"] = _image_pixels(image_seed, (1, 3, 32, 32))
            n = 16
        elif family == "gemma3":
            extra["pixel_values"] = _image_pixels(image_seed, (1, 3, 32, 32))
            n = 16
        else:  # idefics3 / smolvlm
            extra["pixel_values"] = _image_pixels(image_seed, (1, 1, 3, 32, 32))
            extra["pixel_attention_mask"] = torch.ones(1, 1, 32, 32, dtype=torch.bool)
            n = 16
        span = [IMAGE_ID] * n
        if family == "gemma3":
            span = [BOI] + span + [EOI]
        ids = torch.cat([text, torch.tensor(span), tail])[None]
        if family == "gemma3":
            extra["token_type_ids"] = (ids == IMAGE_ID).long()
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)


ARCH_FAMILIES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "llava", "llava_onevision", "internvl", "gemma3",
                 "idefics3", "smolvlm")


LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def llava_with_processor():
    """The tiny LLaVA with an offline ``LlavaProcessor`` (PIL CLIP image processor, local BPE
    tokenizer whose ``<image>`` token is the model's image token). Returns (model, processor)."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<image>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", additional_special_tokens=["<image>"], padding_side="left")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=fast, chat_template=LLAVA_TEMPLATE,
                               patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    model = arch_model("llava")
    model.config.image_token_id = fast.convert_tokens_to_ids("<image>")
    return model, processor
