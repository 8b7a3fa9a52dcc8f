"""RL's Razor (arXiv 2509.04259): RL moves the model's next-token distributions less than SFT did."""

import pytest


@pytest.mark.claim("behaviour.rl_kl_small")
def test_rl_drifts_less_than_sft_in_forward_kl(diagnose, recipe):
    diagnose(recipe)
