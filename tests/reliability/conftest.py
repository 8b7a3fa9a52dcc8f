"""Fixtures the reliability tests share: the planted triple and a throwaway copy of its RL folder."""

import pytest

from reliability_helpers import copy


@pytest.fixture(scope="module")
def triple(planted):
    return planted("paper")


@pytest.fixture
def rl_copy(triple, tmp_path):
    return copy(triple["rl"], tmp_path / "rl")
