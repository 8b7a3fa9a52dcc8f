"""Beyond the paper (issue 17): what later work found RL does to the weights. Gated off until
calibrated (``gate: false`` in thresholds.yaml)."""

import pytest


@pytest.mark.claim("updates.rl_sparse")
def test_RL_updates_a_small_subnetwork_of_nearly_every_matrix_with_nearly_full_rank_updates(diagnose, recipe):
    diagnose(recipe)


@pytest.mark.claim("updates.rl_off_principal")
def test_RL_rotates_the_principal_subspace_and_drifts_the_spectrum_less_than_IN(diagnose, recipe):
    diagnose(recipe)
