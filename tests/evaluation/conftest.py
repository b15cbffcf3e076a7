"""A tiny offline Qwen2 shared by the scoring tests (built once per session, in seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from taosr1_verl.scoring.demo import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("models") / "tiny")
