"""Inference latency on CPU: onnxruntime vs torch eager, and int8 vs fp32, measured in one run.

For SimpleCNN (specs/simple_cnn.yaml, 1x28x28) and ResNet-18 (specs/resnet18.yaml, 3x224x224),
random weights (latency does not depend on training), batch 1 and 32:

- torch eager: ``model.eval()`` under ``torch.inference_mode()``;
- onnxruntime fp32: the graph ``cnnspec export`` writes (torch.onnx.export(dynamo=True), opset 18),
  all graph optimisations on;
- onnxruntime fp32 with graph optimisations off: shows what onnxruntime's fusions (Conv+Relu,
  NCHWc layouts, Gemm+Relu) are worth, i.e. what an export that blocked them would lose;
- onnxruntime int8: the same graph after ``--quantize dynamic-int8`` and ``static-int8``
  (calibrated on random inputs here: ranges do not change the speed).

Both frameworks get the same number of intra-op threads (``--threads``, default 1; onnxruntime
without spinning). Measurements are interleaved in rounds (torch, ort, int8, torch, ...) so that a
change in background load hits every engine alike; each figure is the median latency of all runs.
Target (issue 4): onnxruntime at least 5x faster than torch eager at batch 1 for SimpleCNN.

    python benchmarks/inference_speed.py                 # both models, 1 thread
    python benchmarks/inference_speed.py --threads 2 --models simple_cnn
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

MODELS = {"simple_cnn": REPO_ROOT / "specs" / "simple_cnn.yaml", "resnet18": REPO_ROOT / "specs" / "resnet18.yaml"}
TARGET = 5.0


def exported(model: Any, spec: Any, output_shape: list[int]) -> bytes:
    """The fp32 ONNX bytes exactly as cnnspec export builds them (graph checks included)."""
    from cnnspec.deploy.model_card import key_of
    from cnnspec.export.convert import finish_graph, to_onnx

    proto = to_onnx(model, list(spec.input.shape))
    return finish_graph(proto, {key_of("spec_name"): spec.name}, output_shape)


Runner = Callable[[Any], Any]


def engines(name: str, threads: int, batches: tuple[int, ...]) -> tuple[dict[str, Runner], dict[int, Any], dict[str, int]]:
    """Callables for each engine, inputs per batch size, and model sizes in bytes."""
    import numpy as np
    import torch

    import cnnspec
    from cnnspec.deploy.sessions import new_session
    from cnnspec.export.quantize import quantize

    torch.manual_seed(0)
    spec = cnnspec.load_spec(MODELS[name])
    model = cnnspec.build_model(spec).eval()
    output_shape = list(cnnspec.analyze(spec).output_shape)
    fp32 = exported(model, spec, output_shape)
    calibration = np.random.default_rng(0).standard_normal((16, *spec.input.shape)).astype(np.float32)
    int8 = {mode: quantize(fp32, mode, calibration) for mode in ("dynamic-int8", "static-int8")}
    inputs = {b: np.random.default_rng(b).standard_normal((b, *spec.input.shape)).astype(np.float32) for b in batches}
    sessions = {"onnxruntime fp32": new_session(fp32, threads),
                "ort fp32, graph opt. off": new_session(fp32, threads, optimize=False),
                **{f"onnxruntime {mode}": new_session(data, threads) for mode, data in int8.items()}}

    def torch_eager(batch: Any) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(batch))

    runners: dict[str, Callable[[Any], Any]] = {"torch eager": torch_eager}
    for label, session in sessions.items():
        runners[label] = lambda batch, session=session: session.run(None, {"input": batch})
    sizes = {"torch eager": sum(p.numel() * 4 for p in model.parameters()), "onnxruntime fp32": len(fp32),
             "ort fp32, graph opt. off": len(fp32),
             **{f"onnxruntime {mode}": len(data) for mode, data in int8.items()}}
    return runners, inputs, sizes


def measure(runners: dict[str, Callable[[Any], Any]], batch: Any, seconds: float, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each runner; rounds interleave the runners."""
    times: dict[str, list[float]] = {label: [] for label in runners}
    for run in runners.values():  # warm-up: first calls allocate and pick kernels
        for _ in range(2):
            run(batch)
    for _ in range(rounds):
        for label, run in runners.items():
            deadline = time.perf_counter() + seconds / rounds / len(runners)
            count = 0
            while count < 1 or time.perf_counter() < deadline:
                start = time.perf_counter()
                run(batch)
                times[label].append(time.perf_counter() - start)
                count += 1
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both torch and onnxruntime")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per model and batch size")
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    batches = (1, 32)
    table = Table(title=f"CPU inference latency, {args.threads} thread(s), median (torch {torch.__version__})")
    for column in ("model", "engine", "size", "batch 1", "img/s", "vs torch", "vs ort fp32",
                   "batch 32", "img/s", "vs torch", "vs ort fp32"):
        table.add_column(column, justify="left" if column in ("model", "engine") else "right")
    headline = fusion = None
    for name in args.models:
        runners, inputs, sizes = engines(name, args.threads, batches)
        results = {b: measure(runners, inputs[b], args.seconds) for b in batches}
        for label in runners:
            cells = [name, label, f"{sizes[label] / 1e6:.2f} MB"]
            for b in batches:
                latency = results[b][label]
                cells += [f"{latency * 1e3:.3f} ms", f"{b / latency:,.0f}",
                          f"{results[b]['torch eager'] / latency:.2f}x",
                          f"{results[b]['onnxruntime fp32'] / latency:.2f}x"]
            table.add_row(*cells)
        table.add_section()
        if name == "simple_cnn":
            headline = results[1]["torch eager"] / results[1]["onnxruntime fp32"]
            fusion = results[1]["ort fp32, graph opt. off"] / results[1]["onnxruntime fp32"]
    Console(width=160).print(table)
    if headline is not None:
        verdict = "meets" if headline >= TARGET else "misses"
        print(f"SimpleCNN batch 1: onnxruntime fp32 is {headline:.2f}x faster than torch eager "
              f"({verdict} the {TARGET:.0f}x target); its graph optimisations alone give {fusion:.2f}x")


if __name__ == "__main__":
    main()
