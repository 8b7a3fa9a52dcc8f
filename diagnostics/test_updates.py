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


# Beyond the paper (issue 17): what later work found RL does to the weights. Here, beside the
# paper's three, because they read the same weight pass (one -n worker makes it once). Gated off
# until calibrated (gate: false in thresholds.yaml).


@pytest.mark.claim("updates.rl_sparse")
def test_RL_updates_a_small_subnetwork_of_nearly_every_matrix_with_nearly_full_rank_updates(diagnose, recipe):
    diagnose(recipe)


@pytest.mark.claim("updates.rl_off_principal")
def test_RL_rotates_the_principal_subspace_and_drifts_the_spectrum_less_than_IN(diagnose, recipe):
    diagnose(recipe)
