import os
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


@pytest.fixture
def toy_env(monkeypatch):
    """Environment for subprocesses that must import toy_plugin."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' models are tiny: one torch thread runs them fastest, and two threads on a
    busy 2-core machine crawl. Code under test that sets its own thread count restores it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
