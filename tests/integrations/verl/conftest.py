"""Fixtures shared by the verl integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def transfer_queue():
    """A real local TransferQueue on Ray, for one test module (torn down with Ray after it)."""
    ray = pytest.importorskip("ray")
    tq = pytest.importorskip("transfer_queue")
    from omegaconf import OmegaConf

    # 2-core machines: more logical CPUs than cores, one storage unit (see the verl notes).
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    try:
        yield tq
    finally:
        tq.close()
        ray.shutdown()
