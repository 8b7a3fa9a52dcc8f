"""§2.3 Attention: where RL makes reasoning tokens look at the image."""

import pytest


@pytest.mark.claim("attention.r2v_shift_mid_late")
def test_RL_increases_attention_from_reasoning_to_visual_tokens_in_Mid_Late_layers_not_Early(diagnose, recipe):
    diagnose(recipe)
