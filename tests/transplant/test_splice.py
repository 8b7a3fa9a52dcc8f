"""In-memory splicing (paper §3.3, Table 2): identities, restore, planted late-layer capability."""

from __future__ import annotations

import pytest
import torch

from tiny_ckpts import PLANTED_TOKEN, PROMPTS, load
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError
from vlmdiag.regions import regions_for
from vlmdiag.transplant import Splicer, Variant, all_variants, parse_variant, plan_splice


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(state: dict[str, torch.Tensor], model, names=None) -> None:
    current = model.state_dict()
    for name in names or state:
        assert torch.equal(state[name], current[name]), name


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROMPTS).logits[:, -1]


def decoder_names(model) -> list[str]:
    return [n for n in model.state_dict() if n.startswith("model.language_model.layers.")]


class TestVariants:
    def test_eight_variants_in_table_2_order(self):
        labels = [v.label() for v in all_variants()]
        assert labels == ["IN", "IN:RL:RL", "IN:IN:RL", "RL:RL:IN", "RL:IN:IN", "IN:RL:IN", "RL:IN:RL", "RL"]

    @pytest.mark.parametrize("text, sources", [("IN:RL:RL", "ABB"), ("a:b:a", "ABA"), ("SFT:RL:IN", "ABA"),
                                               ("RL", "BBB")])
    def test_parse(self, text, sources):
        assert parse_variant(text).sources == tuple(sources)

    @pytest.mark.parametrize("text", ["IN:RL", "IN:RL:XX", "IN:RL:RL:RL", ""])
    def test_parse_refuses(self, text):
        with pytest.raises(UsageError, match="Early:Mid:Late"):
            parse_variant(text)

    def test_components_default_to_early_source_and_are_recorded(self):
        plan = plan_splice(parse_variant("RL:IN:IN"), regions_for("paper", 28))
        assert plan.layer_source == ("B",) * 10 + ("A",) * 18
        assert set(plan.component_source.values()) == {"B"}
        record = plan.as_dict()
        assert record["components_from"] == "RL"
        assert record["regions"]["Early"] == [0, 9] and record["regions"]["Late"] == [19, 27]
        explicit = plan_splice(parse_variant("RL:IN:IN", components_from="IN"), regions_for("thirds", 28))
        assert explicit.as_dict()["components"]["lm_head"] == "IN"
        assert explicit.slices() == [("B", 0, 9), ("A", 9, 28)]


@pytest.fixture
def a_with_b(ckpt_a, ckpt_b):
    """``(model, before, splicer)``: a fresh model loaded from A, its state before any splice
    (:func:`snapshot`), and a :class:`Splicer` of B into it."""
    model = load(ckpt_a)
    return model, snapshot(model), Splicer(model, ckpt_a, ckpt_b)


class TestSplicer:
    def test_splice_with_itself_is_bit_identical(self, ckpt_a):
        model = load(ckpt_a)
        before, out_before = snapshot(model), logits(model)
        splicer = Splicer(model, ckpt_a, ckpt_a)
        for variant, record in splicer.sweep():
            assert_identical(before, model)
            assert torch.equal(logits(model), out_before), variant.label()

    def test_all_regions_from_b_equal_b_in_the_decoder(self, ckpt_a, ckpt_b):
        model, reference = load(ckpt_a), load(ckpt_b)
        a_state, b_state = snapshot(model), snapshot(reference)
        splicer = Splicer(model, ckpt_a, ckpt_b)
        with splicer.splice(Variant(("B", "B", "B"), components_from="A")) as record:
            assert_identical(b_state, model, decoder_names(model))
            others = [n for n in a_state if n not in decoder_names(model)]
            assert_identical(a_state, model, others)  # components stay A's when asked
            assert record.tensors_copied == len(decoder_names(model))
        with splicer.splice("RL"):  # parent RL: everything from B, so the model *is* B
            assert_identical(b_state, model)
            assert torch.equal(logits(model), logits(reference))

    def test_restore_leaves_a_bit_identical(self, a_with_b):
        model, before, splicer = a_with_b
        for variant in all_variants() + all_variants("B"):
            with splicer.splice(variant):
                pass
            assert_identical(before, model)

    def test_incremental_sweep_equals_separate_splices(self, a_with_b):
        model, before, splicer = a_with_b
        expected = {}
        for variant in all_variants() + all_variants("B"):
            with splicer.splice(variant):
                expected[variant] = snapshot(model)
        order = all_variants("B")[::-1] + all_variants()
        for variant, record in splicer.sweep(order):
            assert_identical(expected[variant], model)
        assert_identical(before, model)

    def test_sweep_restores_when_left_early(self, a_with_b):
        import contextlib

        model, before, splicer = a_with_b
        with contextlib.closing(splicer.sweep()) as sweep:
            for variant, _ in sweep:
                if variant.label() == "RL:RL:IN":
                    break
        assert_identical(before, model)
        with pytest.raises(RuntimeError, match="boom"):
            for variant, _ in splicer.sweep(["IN:RL:RL", "RL:IN:IN"]):
                if variant.label() == "RL:IN:IN":
                    raise RuntimeError("boom")
        assert_identical(before, model)
        with splicer.splice("RL"):  # the splicer is usable again (no stale "active" flag)
            pass

    def test_restore_after_an_exception(self, a_with_b):
        model, before, splicer = a_with_b
        with pytest.raises(RuntimeError, match="boom"):
            with splicer.splice("IN:RL:RL"):
                assert not torch.equal(model.state_dict()["model.language_model.layers.5.mlp.up_proj.weight"],
                                       before["model.language_model.layers.5.mlp.up_proj.weight"])
                raise RuntimeError("boom")
        assert_identical(before, model)

    def test_splices_do_not_nest(self, ckpt_a, ckpt_b):
        splicer = Splicer(load(ckpt_a), ckpt_a, ckpt_b)
        with splicer.splice("IN:RL:RL"):
            with pytest.raises(UsageError, match="already active"):
                with splicer.splice("RL:IN:IN"):
                    pass

    def test_only_the_chosen_layers_move(self, ckpt_a, ckpt_b):
        model, reference = load(ckpt_a), load(ckpt_b)
        a_state, b_state = snapshot(model), snapshot(reference)
        splicer = Splicer(model, ckpt_a, ckpt_b, regions="paper")  # 2/2/2 for 6 layers
        with splicer.splice("IN:RL:IN") as record:
            state = model.state_dict()
            for name in a_state:
                layer = name.split(".")[3] if name.startswith("model.language_model.layers.") else None
                expected = b_state if layer in ("2", "3") else a_state
                assert torch.equal(state[name], expected[name]), name
        assert record.plan.layers_from("B") == (2, 3)


class TestRestoreFromFile:
    """A's tensors are put back by re-reading A's safetensors, not from a copy kept in memory."""

    def test_no_copy_of_the_model_is_kept(self, a_with_b):
        model, before, splicer = a_with_b
        with splicer.splice("RL") as record:  # every tensor overwritten: the old way kept them all
            assert record.tensors_backed_up == 0
            assert record.tensors_copied == len(before)
        assert record.bytes_reread > 0 and splicer.rereads == 2 * len(before)  # check once + restore
        assert_identical(before, model)
        for variant, record in splicer.sweep():
            assert record.tensors_backed_up == 0
        assert_identical(before, model)
        # restorability is checked once per splicer: later splices only re-read to restore
        rereads = splicer.rereads
        with splicer.splice("IN:RL:RL") as record:
            pass
        assert splicer.rereads - rereads == record.tensors_copied

    def test_a_tensor_changed_after_loading_is_backed_up_and_restored(self, ckpt_a, ckpt_b):
        model = load(ckpt_a)
        name = "model.language_model.layers.5.mlp.up_proj.weight"
        with torch.no_grad():
            model.state_dict()[name].add_(1.0)  # no longer A's file tensor
        before = snapshot(model)
        splicer = Splicer(model, ckpt_a, ckpt_b)
        with splicer.splice("IN:RL:RL") as record:
            assert record.tensors_backed_up == 1
        assert_identical(before, model)
        for variant, record in splicer.sweep(["IN:IN:RL", "IN", "RL", "IN:RL:RL"]):
            pass
        assert_identical(before, model)

    def test_restore_is_exact_in_another_dtype(self, ckpt_a, ckpt_b):
        """A bf16 model loaded from fp32 files: restore re-casts A's tensors the way loading did."""
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(ckpt_a, dtype=torch.bfloat16).eval()
        before = snapshot(model)
        splicer = Splicer(model, ckpt_a, ckpt_b)
        for variant, record in splicer.sweep():
            assert record.tensors_backed_up == 0, variant.label()
        assert_identical(before, model)


class TestPlantedLateCapability:
    """B = A plus a capability placed only in the Late layers (conftest.plant_late_capability)."""

    def test_in_rl_rl_carries_it_and_rl_in_in_does_not(self, ckpt_a, ckpt_planted):
        model = load(ckpt_a)
        planted = load(ckpt_planted)
        base_logits, planted_logits = logits(model), logits(planted)
        assert (planted_logits.argmax(-1) == PLANTED_TOKEN).all()
        assert not (base_logits.argmax(-1) == PLANTED_TOKEN).any()
        splicer = Splicer(model, ckpt_a, ckpt_planted)
        with splicer.splice("IN:RL:RL"):
            spliced = logits(model)
        assert torch.equal(spliced, planted_logits)
        assert (spliced.argmax(-1) == PLANTED_TOKEN).all()
        for variant in ("RL:IN:IN", "RL:RL:IN", "IN:RL:IN"):
            with splicer.splice(variant):
                out = logits(model)
            assert torch.equal(out, base_logits), variant
            assert not (out.argmax(-1) == PLANTED_TOKEN).any(), variant
        for variant in ("IN:IN:RL", "RL:IN:RL"):
            with splicer.splice(variant):
                assert (logits(model).argmax(-1) == PLANTED_TOKEN).all(), variant


class TestRefusals:
    def test_different_layer_counts(self, ckpt_a, ckpt_shallow):
        with pytest.raises(IncompatibleCheckpointsError, match=r"cannot splice .*6 vs 4 LLM layers"):
            Splicer(load(ckpt_a), ckpt_a, ckpt_shallow)

    def test_different_architectures(self, ckpt_a, ckpt_qwen2vl):
        with pytest.raises(IncompatibleCheckpointsError, match="architecture qwen2_5_vl vs qwen2_vl"):
            Splicer(load(ckpt_a), ckpt_a, ckpt_qwen2vl)

    def test_model_not_loaded_from_a(self, ckpt_a, ckpt_shallow):
        with pytest.raises(IncompatibleCheckpointsError, match="does not match checkpoint A"):
            Splicer(load(ckpt_shallow), ckpt_a, ckpt_a)

    def test_regions_for_another_depth(self, ckpt_a, ckpt_b):
        with pytest.raises(UsageError, match="28 decoder layers"):
            Splicer(load(ckpt_a), ckpt_a, ckpt_b, regions=regions_for("paper", 28))

