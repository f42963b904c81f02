"""Tests of benchmarks/torch_worker.py: the PyTorch network is the paper's."""
import pytest

from benchmarks import torch_worker


def test_torch_network_has_the_paper_parameter_count():
    torch = pytest.importorskip("torch")
    net = torch_worker.torch_alexnet(1000, 227)
    assert sum(p.numel() for p in net.parameters()) == 62_378_344  # as model.build_alexnet, single tower
    small = torch_worker.torch_alexnet(10, 67)
    assert tuple(small(torch.zeros(2, 3, 67, 67)).shape) == (2, 10)
