"""§3.2 Parameter comparison: where, and how, RL changes the weights."""

import pytest


@pytest.mark.claim("updates.energy_mid")
def test_both_IN_and_RL_updates_concentrate_their_energy_in_Mid_layers(diagnose, recipe):
    diagnose(recipe)


@pytest.mark.claim("updates.rl_smaller_than_in")
def test_RL_updates_are_orders_of_magnitude_smaller_than_IN_updates(diagnose, recipe):
    diagnose(recipe)


@pytest.mark.claim("updates.rl_steeper_mid_late")
def test_RL_updates_have_a_steeper_singular_value_decay_than_IN_in_Mid_Late_layers(diagnose, recipe):
    diagnose(recipe)
