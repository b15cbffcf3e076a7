"""The serving runtime every timing and export shares: pinned threads, ONNX export and sessions, per-item timing.

Example:
    >>> with torch_threads(1):
    ...     us = time_per_item_us(lambda inputs: sum(inputs), [1, 2], batch_size=2, repeats=1)
    >>> us > 0
    True
"""

from __future__ import annotations

import inspect
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Backend = Literal["onnxruntime", "torch"]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Pin torch's intra-op threads for a block (benchmarks state the count they ran with)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_runner(module: nn.Module, example: Sequence[torch.Tensor], backend: Backend, threads: int,
                workdir: str | os.PathLike[str] | None = None) -> Callable[[Sequence[Any]], Any]:
    """A callable running ``module`` on a list of inputs with the chosen runtime: ONNX Runtime on the
    module's ONNX export (what the student ships as) or torch eager in inference mode."""
    module = module.eval()
    if backend == "torch":
        def run_torch(inputs: Sequence[Any]) -> Any:
            with torch.inference_mode():
                return module(*inputs)
        return run_torch
    if backend != "onnxruntime":
        raise ValueError(f"unknown latency backend {backend!r}; use 'onnxruntime' or 'torch'")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(module, example, path)
        sess = ort_session(path, threads)
    names = [i.name for i in sess.get_inputs()]

    def run_ort(inputs: Sequence[Any]) -> Any:
        return sess.run(None, dict(zip(names, inputs, strict=True)))
    return run_ort


def export_onnx(module: nn.Module, example: Sequence[torch.Tensor], path: str | os.PathLike[str],
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None) -> None:
    """Export with a dynamic batch dimension (torch's dynamo exporter; needs ``onnxscript``)."""
    import logging as _logging

    names = list(input_names or [f"x{i}" for i in range(len(example))])
    batch = torch.export.Dim("batch", min=1)
    shapes: tuple[Any, ...] = tuple({0: batch} for _ in names)
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        # torch.export sees ``forward(*inputs)`` as one tuple argument.
        shapes = (shapes,)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}")
    # The exporter logs every optimisation pass at INFO; keep a run's log readable.
    quiet = [_logging.getLogger(n) for n in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(_logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(example), str(tmp), input_names=names,
                              output_names=list(output_names or ["y"]), dynamic_shapes=shapes, dynamo=True,
                              verbose=False, external_data=False)
    finally:
        for q, lv in zip(quiet, levels, strict=True):
            q.setLevel(lv)
    os.replace(tmp, path)


def ort_session(path: str | os.PathLike[str], threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_per_item_us(run: Callable[[Sequence[Any]], Any], inputs: Sequence[Any], batch_size: int,
                     repeats: int = 7, min_time_s: float = 0.02) -> float:
    """Median over ``repeats`` of the per-item time (µs); each repeat loops until ``min_time_s``."""
    run(inputs)
    run(inputs)
    samples = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            run(inputs)
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time_s:
                break
        samples.append(dt / n / batch_size * 1e6)
    return statistics.median(samples)
