"""§3.3 Frankenstein transplants: which of RL's regions carry its gain."""

import pytest


@pytest.mark.claim("transplant.mid_late_carries_gain")
def test_transplanting_RL_Mid_and_Late_layers_into_IN_keeps_the_Mv2r_and_Mrea_gains(diagnose, recipe):
    diagnose(recipe)
