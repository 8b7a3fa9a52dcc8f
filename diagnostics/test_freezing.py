"""§4 Freezing: which regions RL needs to train."""

import pytest


@pytest.mark.claim("freezing.late_necessary")
def test_freezing_Late_layers_during_RL_removes_the_RL_gain(diagnose, recipe):
    diagnose(recipe)
