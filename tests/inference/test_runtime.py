"""Model loading, prompt building and batched greedy generation."""

from __future__ import annotations

import json

import numpy as np

import pytest
import torch

import tiny_models
from vlmdiag.errors import CheckpointError
from vlmdiag.runtime.generate import build_inputs, generate, image_prompt, text_prompt, black_image_prompt
from vlmdiag.runtime.model import load_model


def test_batched_generation_equals_unbatched(qwen_loaded, images):
    """Left padding: each row of a mixed-size batch answers as it does alone (image and text prompts)."""
    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("How many items are there in the image?", images["green_wide"]),
               black_image_prompt("What color is the square?", images["blue"]),
               text_prompt("Please solve 2 + 3."), text_prompt("You are a helpful assistant. 7 * 8 =")]
    batched = generate(qwen_loaded, prompts, max_new_tokens=12, batch_size=8)
    single = [generate(qwen_loaded, [p], max_new_tokens=12)[0] for p in prompts]
    assert [g.token_ids.tolist() for g in batched] == [g.token_ids.tolist() for g in single]
    assert len({g.text for g in batched}) >= 3  # the tiny model's answers depend on the input
    inputs = build_inputs(qwen_loaded, prompts[:2])
    assert inputs["input_ids"].shape[0] == 2 and (inputs["attention_mask"][:, 0] == 0).any()  # left padded


def test_all_multimodal_inputs_are_passed(qwen_loaded, images):
    """mm_token_type_ids reaches the model; without it Qwen2.5-VL computes other (wrong) positions."""
    inputs = build_inputs(qwen_loaded, [image_prompt("What color is the square?", images["red"])])
    assert {"pixel_values", "image_grid_thw", "mm_token_type_ids"} <= set(inputs)
    with torch.no_grad():
        full = qwen_loaded.model(**inputs).logits
        qwen_loaded.model.model.rope_deltas = None
        partial = qwen_loaded.model(**{k: v for k, v in inputs.items() if k != "mm_token_type_ids"}).logits
    assert (full - partial).abs().max() > 1e-3


def test_black_image_prompt_keeps_size(images):
    prompt = black_image_prompt("q", images["green_wide"])
    assert prompt.image.size == images["green_wide"].size and prompt.image.getextrema() == ((0, 0),) * 3


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory, qwen_processor):
    path = tmp_path_factory.mktemp("tiny-qwen25")
    model = tiny_models.spread_init(tiny_models.qwen25_model(qwen_processor.tokenizer, seed=0), seed=0)
    model.save_pretrained(path)
    qwen_processor.save_pretrained(path)
    qwen_processor.tokenizer.save_pretrained(path)
    return path


def test_load_model_roundtrip(saved_checkpoint, qwen_loaded, images):
    loaded = load_model(saved_checkpoint, device="cpu")
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert loaded.adapter.family == "qwen2_5_vl" and loaded.num_layers == 4
    assert loaded.image_token_id == qwen_loaded.image_token_id == loaded.config["image_token_id"]
    prompt = [image_prompt("What color is the square?", images["red"])]
    assert generate(loaded, prompt, max_new_tokens=8)[0].text == generate(qwen_loaded, prompt, max_new_tokens=8)[0].text


def test_load_model_refuses_remote_code(saved_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(saved_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_x.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="trust_remote_code=True"):
        load_model(folder, device="cpu")


def test_load_model_without_image_token_is_a_clear_error(saved_checkpoint, tmp_path):
    """A checkpoint whose tokenizer lacks the image placeholder token is refused by name."""
    import shutil

    folder = tmp_path / "noimage"
    shutil.copytree(saved_checkpoint, folder)
    tiny_models.drop_image_token(folder)
    with pytest.raises(CheckpointError, match="no image token"):
        load_model(folder, device="cpu")


def test_load_model_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "nope")


def test_llava_processor_path(images):
    """A second family through its own processor and chat template: LLaVA batches (left padding)
    equal single runs, and the attention measurement finds its 16 visual tokens."""
    from vlmdiag.measure.attention import attention_teacher_forced
    from vlmdiag.runtime.model import wrap_model

    model, processor = tiny_models.llava_with_processor()
    loaded = wrap_model(model, processor)
    assert loaded.adapter.family == "llava" and loaded.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")
    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("How many items are there in the image?", images["green_wide"]),
               text_prompt("Please solve 2 + 3.")]
    batched = generate(loaded, prompts, max_new_tokens=6)
    single = [generate(loaded, [p], max_new_tokens=6)[0] for p in prompts]
    assert [g.token_ids.tolist() for g in batched] == [g.token_ids.tolist() for g in single]
    result = attention_teacher_forced(loaded, prompts[:1], ["<think> red </think> red"])[0]
    assert result.n_visual == 16 and result.mass.shape == (4, 4) and np.isfinite(result.mass).all()


def test_built_inputs_are_reused_across_model_states(qwen_loaded, images):
    """A second sweep over the same prompts (another transplant variant) does not run the
    processor again, and gets tensors it may change without touching the cache."""
    from vlmdiag.runtime import inputs as cache_module

    cache = cache_module.InputsCache()
    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("What color is the square?", images["blue"])]
    first = cache_module.cached_inputs(qwen_loaded, prompts, cache=cache)
    first["input_ids"].fill_(0)
    again = cache_module.cached_inputs(qwen_loaded, prompts, cache=cache)
    assert cache.hits == 1 and cache.misses == 1
    torch.testing.assert_close(again, build_inputs(qwen_loaded, prompts))
    # Another image (same size) or another question is another key.
    other = [prompts[0], image_prompt("What color is the square?", images["blue_corner"])]
    cache_module.cached_inputs(qwen_loaded, other, cache=cache)
    assert cache.misses == 2


def test_generation_order_and_answers_do_not_depend_on_batch_size(qwen_loaded, images):
    """Length-sorted batches of any size give every prompt its unbatched answer, in input order."""
    prompts = [text_prompt("Please solve 2 + 3."), image_prompt("How many items are there?", images["green_wide"]),
               image_prompt("What color is the square?", images["red"]), text_prompt("7 * 8 =")]
    one = [generate(qwen_loaded, [p], max_new_tokens=6)[0].token_ids.tolist() for p in prompts]
    for batch_size in (2, 3):
        got = generate(qwen_loaded, prompts, max_new_tokens=6, batch_size=batch_size)
        assert [g.token_ids.tolist() for g in got] == one


def test_image_token_of_a_processor_that_expands_a_marker():
    """Gemma 3's processor names ``<start_of_image>`` its image_token (the prompt placeholder it
    expands into the marker, the soft tokens and the end marker): the visual token is config.json's
    ``<image_soft_token>``, which the processor's tokenizer agrees with. A model whose image id is
    another token of that tokenizer is still refused."""
    import tiny_checkpoints
    from vlmdiag.runtime.model import wrap_model

    model, processor, _ = tiny_checkpoints.gemma3_parts(0)
    soft = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    assert processor.image_token == "<start_of_image>" and model.config.image_token_id == soft
    assert wrap_model(model, processor).image_token_id == soft
    model.config.image_token_id = processor.tokenizer.convert_tokens_to_ids("<end_of_image>")
    with pytest.raises(CheckpointError, match="differs between config.json"):
        wrap_model(model, processor)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl", "gemma3", "idefics3",
                                    "smolvlm"])
def test_a_batch_of_image_prompts_goes_through_every_familys_processor(family, images):
    """Two prompts with an image each in one batch: the family's ``processor_images`` tells how
    its processor wants them (Gemma 3 and SmolVLM refuse a flat list of several images)."""
    import tiny_checkpoints
    from vlmdiag.runtime.generate import build_cpu_inputs
    from vlmdiag.runtime.model import wrap_model

    model, processor, _ = tiny_checkpoints.PARTS[family](0)
    loaded = wrap_model(model, processor)
    batch = build_cpu_inputs(loaded, [image_prompt("What is it?", images["red"]), image_prompt("And this?", images["green_wide"])])
    assert batch["input_ids"].shape[0] == 2
    assert [int((row == loaded.image_token_id).sum()) > 0 for row in batch["input_ids"]] == [True, True]
