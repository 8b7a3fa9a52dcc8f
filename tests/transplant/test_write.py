"""Writing a spliced checkpoint folder, its mergekit YAML, and the ``vlmdiag transplant`` command."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open

from tiny_ckpts import LAYERS, PLANTED_TOKEN, PROMPTS, build, load, save, tiny_config
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError
from vlmdiag.transplant import Splicer, main, parse_variant, write_transplant


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROMPTS).logits[:, -1]


def test_written_splice_equals_in_memory_splice_and_carries_the_planted_capability(tmp_path, ckpt_a, ckpt_planted):
    result = write_transplant(ckpt_a, ckpt_planted, "IN:RL:RL", tmp_path / "out")
    written = load(result.out)
    assert (logits(written).argmax(-1) == PLANTED_TOKEN).all()
    model = load(ckpt_a)
    with Splicer(model, ckpt_a, ckpt_planted).splice("IN:RL:RL"):
        expected = model.state_dict()
        for name, value in written.state_dict().items():
            assert torch.equal(value, expected[name]), name
    other = write_transplant(ckpt_a, ckpt_planted, "RL:IN:IN", tmp_path / "out2")
    assert not (logits(load(other.out)).argmax(-1) == PLANTED_TOKEN).any()


def test_folder_contents_layout_and_provenance(tmp_path, ckpt_a, ckpt_b):
    result = write_transplant(ckpt_a, ckpt_b, "RL:IN:IN", tmp_path / "out")
    files = sorted(p.name for p in result.out.iterdir())
    assert files == sorted(["config.json", "generation_config.json", "mergekit_config.yml", "model.safetensors",
                            "tokenizer_config.json", "vlmdiag_transplant.json"])
    # non-weight files come from the components source, which defaults to the Early source (B here)
    assert json.loads((result.out / "tokenizer_config.json").read_text()) == {"marker": "b"}
    with safe_open(result.out / "model.safetensors", "pt") as f, safe_open(ckpt_a / "model.safetensors", "pt") as g:
        assert sorted(f.keys()) == sorted(g.keys())  # the on-disk (hub) layout is kept
    record = json.loads((result.out / "vlmdiag_transplant.json").read_text())
    assert record["variant"] == "B:A:A" and record["components_from"] == "B"
    assert record["checkpoints"]["A"]["path"] == str(ckpt_a.resolve())
    assert len(record["checkpoints"]["B"]["fingerprint"]) == 32
    written, b = load(result.out), load(ckpt_b)
    assert torch.equal(written.lm_head.weight, b.lm_head.weight)
    assert torch.equal(written.model.visual.merger.mlp[0].weight, b.model.visual.merger.mlp[0].weight)


def test_components_from_is_explicit(tmp_path, ckpt_a, ckpt_b):
    result = write_transplant(ckpt_a, ckpt_b, parse_variant("RL:IN:IN", components_from="IN"), tmp_path / "out")
    written, a, b = load(result.out), load(ckpt_a), load(ckpt_b)
    assert torch.equal(written.lm_head.weight, a.lm_head.weight)
    assert torch.equal(written.model.language_model.embed_tokens.weight, a.model.language_model.embed_tokens.weight)
    assert torch.equal(written.model.visual.blocks[0].attn.qkv.weight, a.model.visual.blocks[0].attn.qkv.weight)
    assert torch.equal(written.model.language_model.layers[0].mlp.up_proj.weight,
                       b.model.language_model.layers[0].mlp.up_proj.weight)
    assert json.loads((result.out / "tokenizer_config.json").read_text()) == {"marker": "a"}


def mergekit_schema():
    """The fields of mergekit's ``config.py`` (MergeConfiguration and the models under it, read
    from arcee-ai/mergekit), with unknown keys forbidden so a misspelt key fails here."""
    from typing import Optional

    from pydantic import BaseModel, ConfigDict

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class InputSlice(Strict):
        model: str
        layer_range: tuple[int, int]
        parameters: Optional[dict] = None

    class InputModel(Strict):
        model: str
        parameters: Optional[dict] = None

    class OutputSlice(Strict):
        sources: list[InputSlice]
        base_model: Optional[str] = None
        residual_weight: Optional[float] = None
        parameters: Optional[dict] = None

    class OutputModule(Strict):
        slices: Optional[list[OutputSlice]] = None
        models: Optional[list[InputModel]] = None
        parameters: Optional[dict] = None

    class MergeConfiguration(Strict):
        modules: Optional[dict[str, OutputModule]] = None
        slices: Optional[list[OutputSlice]] = None
        models: Optional[list[InputModel]] = None
        merge_method: str
        base_model: Optional[str] = None
        dtype: Optional[str] = None
        tokenizer_source: Optional[str] = None
        tokenizer: Optional[dict] = None
        chat_template: Optional[str] = None
        out_dtype: Optional[str] = None
        parameters: Optional[dict] = None

    return MergeConfiguration


def test_mergekit_yaml(tmp_path, ckpt_a, ckpt_b):
    result = write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", tmp_path / "out", regions="thirds")
    text = (result.out / "mergekit_config.yml").read_text()
    config = yaml.safe_load(text)
    parsed = mergekit_schema().model_validate(config)
    assert sum(x is not None for x in (parsed.modules, parsed.slices, parsed.models)) == 1  # mergekit's rule
    assert set(parsed.modules) == {"text_decoder", "vision_tower", "multi_modal_projector"}  # qwen2_5_vl.json
    assert config["merge_method"] == "passthrough"
    slices = config["modules"]["text_decoder"]["slices"]
    assert [s["sources"][0]["layer_range"] for s in slices] == [[0, 2], [2, LAYERS]]
    assert [s["sources"][0]["model"] for s in slices] == [str(ckpt_a.resolve()), str(ckpt_b.resolve())]
    assert config["modules"]["vision_tower"]["models"] == [{"model": str(ckpt_a.resolve())}]
    assert config["modules"]["multi_modal_projector"]["models"] == [{"model": str(ckpt_a.resolve())}]
    assert config["dtype"] == "float32"
    # mergekit would take final norm / lm_head from the last slice (B); vlmdiag took them from A
    assert result.mergekit_exact is False and "NOTE: mergekit's passthrough" in text
    same = write_transplant(ckpt_a, ckpt_b, "IN:RL:IN", tmp_path / "out2")
    assert same.mergekit_exact is True
    assert "NOTE" not in (same.out / "mergekit_config.yml").read_text()
    assert [s["sources"][0]["layer_range"] for s in
            yaml.safe_load((same.out / "mergekit_config.yml").read_text())["modules"]["text_decoder"]["slices"]] \
        == [[0, 2], [2, 4], [4, 6]]


def test_sharded_output_loads(tmp_path, ckpt_a, ckpt_b):
    result = write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", tmp_path / "out", max_shard_bytes=200_000)
    shards = sorted(p.name for p in result.out.glob("*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((result.out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    single = write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", tmp_path / "single")
    assert torch.equal(logits(load(result.out)), logits(load(single.out)))


class TestRefusals:
    def test_existing_out_is_never_overwritten(self, tmp_path, ckpt_a, ckpt_b):
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        with pytest.raises(UsageError, match="already exists"):
            write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", out)
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(UsageError, match="already exists"):
            write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", empty)
        assert [p.name for p in out.iterdir()] == ["keep.txt"] and not list(empty.iterdir())

    def test_out_inside_an_input_folder(self, ckpt_a, ckpt_b):
        with pytest.raises(UsageError, match="inside the input checkpoint"):
            write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", ckpt_b / "spliced")
        assert not (ckpt_b / "spliced").exists()

    def test_incompatible_leaves_nothing_behind(self, tmp_path, ckpt_a, ckpt_shallow, ckpt_qwen2vl):
        for other, message in ((ckpt_shallow, "6 vs 4 LLM layers"), (ckpt_qwen2vl, "architecture")):
            with pytest.raises(IncompatibleCheckpointsError, match=message):
                write_transplant(ckpt_a, other, "IN:RL:RL", tmp_path / "out")
        assert list(tmp_path.iterdir()) == []


class TestMain:
    def test_writes_and_reports(self, tmp_path, ckpt_a, ckpt_planted, capsys):
        code = main(["--from", str(ckpt_a), "--with", str(ckpt_planted), "--regions", "IN:RL:RL",
                     "--out", str(tmp_path / "out")])
        assert code == 0
        assert "IN:RL:RL" in capsys.readouterr().out
        assert (logits(load(tmp_path / "out")).argmax(-1) == PLANTED_TOKEN).all()

    @pytest.mark.parametrize("extra, message", [
        (["--regions", "IN:XX:RL"], "Early:Mid:Late"),
        (["--regions", "IN:RL:RL", "--cuts", "9,3"], "--regions '9,3'"),
    ], ids=["bad-variant", "bad-cuts"])
    def test_usage_errors_exit_2(self, tmp_path, ckpt_a, ckpt_b, capsys, extra, message):
        code = main(["--from", str(ckpt_a), "--with", str(ckpt_b), "--out", str(tmp_path / "out"), *extra])
        assert code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_existing_out_exit_2(self, tmp_path, ckpt_a, ckpt_b, capsys):
        (tmp_path / "out").mkdir()
        assert main(["--from", str(ckpt_a), "--with", str(ckpt_b), "--regions", "IN:RL:RL",
                     "--out", str(tmp_path / "out")]) == 2
        assert "already exists" in capsys.readouterr().err

    def test_incompatible_exit_1(self, tmp_path, ckpt_a, ckpt_shallow, capsys):
        assert main(["--from", str(ckpt_a), "--with", str(ckpt_shallow), "--regions", "IN:RL:RL",
                     "--out", str(tmp_path / "out")]) == 1
        assert "LLM layers" in capsys.readouterr().err


def test_tied_embeddings(tmp_path):
    """With tie_word_embeddings the checkpoint has no lm_head tensor; the splice still restores
    the shared embedding, and the components source's embedding reaches lm_head."""
    a = save(build(tiny_config(tied=True), seed=5), tmp_path / "ta")
    b = save(build(tiny_config(tied=True), seed=6), tmp_path / "tb")
    model, reference = load(a), load(b)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    splicer = Splicer(model, a, b)
    with splicer.splice("RL:IN:IN"):
        assert torch.equal(model.lm_head.weight, reference.lm_head.weight)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    with splicer.splice("RL"):
        assert torch.equal(logits(model), logits(reference))


def test_mixed_key_layouts(tmp_path, ckpt_a, ckpt_b):
    """B stored with the transformers 5.x in-memory names (``model.language_model.layers.*``),
    A with the hub layout (``model.layers.*``): tensors are matched by canonical name, and the
    written folder keeps the components source's layout."""
    import shutil

    from safetensors.torch import save_file

    canonical = tmp_path / "b_canonical"
    canonical.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(ckpt_b / name, canonical / name)
    state = {k: v.contiguous() for k, v in load(ckpt_b).state_dict().items()}
    save_file(state, str(canonical / "model.safetensors"), metadata={"format": "pt"})
    assert any(k.startswith("model.language_model.layers.") for k in state)
    via_canonical = write_transplant(ckpt_a, canonical, "IN:RL:RL", tmp_path / "x")
    via_hub = write_transplant(ckpt_a, ckpt_b, "IN:RL:RL", tmp_path / "y")
    with safe_open(via_canonical.out / "model.safetensors", "pt") as f, \
            safe_open(via_hub.out / "model.safetensors", "pt") as g:
        assert sorted(f.keys()) == sorted(g.keys()) and any(k.startswith("model.layers.") for k in f.keys())
        for key in f.keys():
            assert torch.equal(f.get_tensor(key), g.get_tensor(key)), key
    model = load(ckpt_a)
    with Splicer(model, ckpt_a, canonical).splice("RL"):
        assert torch.equal(logits(model), logits(load(ckpt_b)))
