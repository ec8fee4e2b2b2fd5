"""Whole-process time of `cnnspec analyze specs/resnet50.yaml` against torchinfo on torchvision's
ResNet-50, measured side by side in one run. Target: cnnspec at least 15x faster.

    python benchmarks/analyze_speed.py [--runs N]

Both sides are timed as a user sees them: a fresh process, imports included, output discarded.
torchinfo needs torch and runs the model on a (1, 3, 224, 224) input; cnnspec reads the spec.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHINFO = (
    "import torchinfo, torchvision\n"
    "torchinfo.summary(torchvision.models.resnet50(), (1, 3, 224, 224), verbose=0)\n"
)


def time_process(command: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of each run of ``command`` (stdout discarded, failures fatal)."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side (default 5)")
    args = parser.parse_args()
    executable = shutil.which("cnnspec") or str(Path(sys.executable).with_name("cnnspec"))
    cnnspec_cmd = [executable, "analyze", "specs/resnet50.yaml"]
    torchinfo_cmd = [sys.executable, "-c", TORCHINFO]
    time_process(cnnspec_cmd, 1)  # warm the page cache and .pyc files for both sides
    time_process(torchinfo_cmd, 1)
    ours = time_process(cnnspec_cmd, args.runs)
    theirs = time_process(torchinfo_cmd, args.runs)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"{'command':<58} {'median s':>9} {'min s':>7}")
    print(f"{'cnnspec analyze specs/resnet50.yaml':<58} {ours_median:>9.3f} {min(ours):>7.3f}")
    print(f"{'torchinfo.summary(torchvision resnet50, (1,3,224,224))':<58} {theirs_median:>9.3f} {min(theirs):>7.3f}")
    ratio = theirs_median / ours_median
    print(f"ratio (torchinfo / cnnspec, medians): {ratio:.1f}x  target >= 15x: {'met' if ratio >= 15 else 'MISSED'}")


if __name__ == "__main__":
    main()
