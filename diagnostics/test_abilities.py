"""§2.2 Fine-grained abilities: Mvis, Mv2r, Mrea across Base → IN → RL."""

import pytest


@pytest.mark.claim("abilities.no_uniform_vision_gain")
def test_end_to_end_gains_do_not_come_from_uniformly_better_vision(diagnose, recipe):
    diagnose(recipe)
