"""§3.1 Functional localization on the base checkpoint: vision by visual-token swapping, reasoning
by layer skipping."""

import pytest


@pytest.mark.claim("localization.vision_early")
def test_vision_functions_act_in_Early_Mid_layers(diagnose, recipe):
    diagnose(recipe)


@pytest.mark.claim("localization.reasoning_late")
def test_reasoning_acts_in_Late_layers(diagnose, recipe):
    diagnose(recipe)
