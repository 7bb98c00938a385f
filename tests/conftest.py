"""Shared fixtures. ``HAMLIB_TEST_DEVICE=cuda`` runs the same tests on a GPU."""
import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("HAMLIB_TEST_DEVICE", "cpu"))


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture
def gen() -> torch.Generator:
    g = torch.Generator(device=DEVICE)
    g.manual_seed(0)
    return g
