"""The chapter's MNIST training loop against ``cnnspec train``, same data, model, batch and epochs.

One run measures, on this machine, side by side:

- baseline: the chapter's own loop, written as the chapter writes it: torchvision's MNIST dataset
  with ``transforms.ToTensor()`` + ``Normalize((0.1307,), (0.3081,))`` applied per item, a
  ``DataLoader(batch_size=64, shuffle=True)``, the SimpleCNN as a plain ``nn.Module``, Adam 1e-3,
  ``CrossEntropyLoss``, then test accuracy over the 10,000 test images;
- cnnspec: ``cnnspec train specs/simple_cnn.yaml --dataset mnist --data-dir ../shared/data`` with
  the same batch size, optimiser, learning rate and epochs, in its own process.

It prints training images/s for each (training time only, evaluation excluded), their ratio (the
target is at least 3x on CPU) and the final test accuracies. cnnspec runs with its default
``--precision auto`` (bf16 mixed precision on CPUs with native bf16, else fp32) and with
``--precision fp32``, so that the gain of the data path and memory layout alone is visible. Every
variant runs in its own process with the same number of CPU threads (``--threads``, default: every
core this process may use); ``--rounds N`` runs them all N times, interleaved, and reports medians
(the load of a shared machine moves single runs by 15% and more).

``cnnspec train`` preloads tcmalloc when the system has it, else tunes glibc's malloc to keep what
it frees (cnnspec/train/allocator.py). More rows show what is the allocator's: the chapter's loop
on tcmalloc too (LD_PRELOAD) when it is installed, cnnspec on tuned glibc
(``CNNSPEC_ALLOCATOR=glibc``: what a machine without tcmalloc gets) and on glibc as it comes
(``CNNSPEC_ALLOCATOR=system``).

Then it measures what each augmentation of ``AUGMENTATIONS`` (one typical configuration each)
costs, in one process: the real training step without and with it, and the transform alone on
the same batches, interleaved in rounds so that the load of a shared machine hits every variant
alike (separate training processes differ more by load than by augmentation);
``--no-augment-costs`` skips it.

    python benchmarks/train_speed.py               # 1 epoch: a few minutes on 2 cores
    python benchmarks/train_speed.py --no-augment-costs --rounds 3
    python benchmarks/train_speed.py --epochs 3    # the chapter's full experiment
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# One typical configuration per transform (MNIST-sized images), as a user would write it.
AUGMENTATIONS = [
    "{type: random_crop, size: 28, padding: 2}",
    "{type: random_horizontal_flip, p: 0.5}",
    "{type: random_rotation, degrees: 10}",
    "{type: random_affine, degrees: 10, translate: [0.1, 0.1], scale: [0.9, 1.1]}",
    "{type: color_jitter, brightness: 0.3, contrast: 0.3}",
    "{type: random_erasing, p: 0.5}",
    "{type: random_resized_crop, size: 28, scale: [0.6, 1.0]}",
]


def chapter_loop(data_dir: Path, epochs: int, batch_size: int, seed: int) -> tuple[float, float]:
    """The chapter's training code, unchanged in substance: (training images/s, test accuracy)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    class SimpleCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc1 = nn.Linear(64 * 7 * 7, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 64 * 7 * 7)
            x = F.relu(self.fc1(x))
            return self.fc2(x)

    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_dataset = datasets.MNIST(root=str(data_dir), train=True, download=False, transform=transform)
    test_dataset = datasets.MNIST(root=str(data_dir), train=False, download=False, transform=transform)
    train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(test_dataset, batch_size=1000, shuffle=False)

    model = SimpleCNN()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    training_seconds = 0.0
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        for images, labels in train_loader:
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
        training_seconds += time.perf_counter() - started
        print(f"  chapter loop: epoch {epoch + 1}/{epochs} done, last loss {loss.item():.4f}", flush=True)

    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in test_loader:
            correct += (model(images).argmax(1) == labels).sum().item()
    return len(train_dataset) * epochs / training_seconds, correct / len(test_dataset)


RUNS: Path | None = None
"""Where cnnspec_run puts its run directories: a temporary folder that main removes at the end,
or ``--keep-runs DIR``."""


def find_tcmalloc() -> str | None:
    sys.path.insert(0, str(REPO))
    from cnnspec.train.allocator import find_tcmalloc as find

    return find()


def environment(threads: int, allocator: str) -> dict[str, str]:
    """Both sides get the same threads; ``allocator`` is "system" or "tcmalloc" (preloaded)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CNNSPEC_ALLOCATOR", "GLIBC_TUNABLES")}
    env["OMP_NUM_THREADS"] = str(threads)
    if allocator == "tcmalloc":
        env["LD_PRELOAD"] = find_tcmalloc() or ""
    return env


def chapter_process(args: argparse.Namespace, allocator: str) -> tuple[float, float]:
    """The chapter loop in its own process (like the cnnspec runs): (training images/s, test accuracy)."""
    command = [sys.executable, __file__, "--chapter-only", "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--seed", str(args.seed), "--data-dir", str(args.data_dir)]
    done = subprocess.run(command, check=True, env=environment(args.threads, allocator), cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
    print(done.stdout.rstrip(), flush=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["images_per_second"], result["test_accuracy"]


def cnnspec_run(data_dir: Path, epochs: int, batch_size: int, seed: int, threads: int,
                precision: str, augment: list[str] = (), allocator: str = "auto") -> tuple[float, float, Path]:
    """``cnnspec train`` in its own process: (training images/s over all epochs, last eval accuracy).
    ``allocator``: a ``CNNSPEC_ALLOCATOR`` value ("auto": tcmalloc when installed, else tuned glibc)."""
    assert RUNS is not None, "main() sets RUNS"
    out = Path(tempfile.mkdtemp(prefix="train_speed_", dir=RUNS)) / "run"
    command = [sys.executable, "-m", "cnnspec", "train", str(REPO / "specs" / "simple_cnn.yaml"),
               "--dataset", "mnist", "--data-dir", str(data_dir), "--out", str(out), "--epochs", str(epochs),
               "--batch-size", str(batch_size), "--optimizer", "adam", "--lr", "0.001", "--seed", str(seed),
               "--device", "cpu", "--precision", precision, *(part for a in augment for part in ("--augment", a))]
    env = {**environment(threads, "system"), "CNNSPEC_ALLOCATOR": allocator}
    subprocess.run(command, check=True, env=env, cwd=REPO)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    images = sum(r["train_images"] for r in records)
    seconds = sum(r["train_seconds"] for r in records)
    return images / seconds, records[-1]["eval_accuracy"], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads for both sides (default: every core this process may use)")
    parser.add_argument("--precision", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"],
                        help="cnnspec runs to measure (auto picks bf16 on CPUs with native bf16)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every variant this many times, interleaved, and report medians")
    parser.add_argument("--no-augment-costs", action="store_true", help="skip the per-augmentation runs")
    parser.add_argument("--keep-runs", type=Path, default=None,
                        help="keep the run directories under this folder (default: a temporary folder, removed)")
    parser.add_argument("--chapter-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chapter_only:  # one chapter-loop process of measure(): its figures as the last line
        import torch

        torch.set_num_threads(args.threads)
        speed, accuracy = chapter_loop(args.data_dir, args.epochs, args.batch_size, args.seed)
        print(json.dumps({"images_per_second": speed, "test_accuracy": accuracy}))
        return
    global RUNS
    if args.keep_runs is not None:
        args.keep_runs.mkdir(parents=True, exist_ok=True)
        RUNS = args.keep_runs
        measure(args)
        return
    with tempfile.TemporaryDirectory(prefix="train_speed_") as runs:
        RUNS = Path(runs)
        measure(args)


def measure(args: argparse.Namespace) -> None:
    import statistics

    tcmalloc = find_tcmalloc()
    print(f"MNIST, SimpleCNN, Adam 1e-3, batch {args.batch_size}, {args.epochs} epoch(s), "
          f"{args.threads} CPU thread(s), {args.rounds} round(s), tcmalloc: {tcmalloc or 'not installed'}, "
          f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    chapter = "chapter loop (torchvision dataset + ToTensor/Normalize per item + DataLoader)"
    variants: list[tuple[str, object]] = [("chapter loop", lambda: chapter_process(args, "system"))]
    if tcmalloc:
        # cnnspec preloads tcmalloc; the chapter's loop on it too shows what is the allocator's.
        variants.append(("chapter loop + tcmalloc", lambda: chapter_process(args, "tcmalloc")))
    for precision in args.precision:
        allocator = " (tcmalloc)" if tcmalloc else " (glibc tuned)"
        variants.append((f"cnnspec --precision {precision}{allocator}", lambda p=precision: cnnspec_run(
            args.data_dir, args.epochs, args.batch_size, args.seed, args.threads, p)[:2]))
        if precision != args.precision[0]:
            continue
        for chosen, label in (("glibc", "glibc tuned"), ("system", "system")):
            if chosen == "glibc" and not tcmalloc:
                continue  # the row above is already tuned glibc
            variants.append((f"cnnspec --precision {precision} ({label})", lambda p=precision, a=chosen: cnnspec_run(
                args.data_dir, args.epochs, args.batch_size, args.seed, args.threads, p, allocator=a)[:2]))
    speeds: dict[str, list[float]] = {name: [] for name, _ in variants}
    accuracies: dict[str, float] = {}
    for round_ in range(args.rounds):
        for name, run in variants:
            print(f"round {round_ + 1}/{args.rounds}: {chapter if name == 'chapter loop' else name}", flush=True)
            speed, accuracies[name] = run()
            speeds[name].append(speed)
    base = statistics.median(speeds["chapter loop"])
    with_tcmalloc = statistics.median(speeds["chapter loop + tcmalloc"]) if tcmalloc else None
    print()
    header = f"{'':38}{'train images/s':>16}{'test accuracy':>15}{'vs chapter':>12}"
    print(header + (f"{'vs chapter+tcmalloc':>21}" if tcmalloc else "") + "   per round")
    for name, _ in variants:
        speed = statistics.median(speeds[name])
        line = f"{name:38}{speed:>16,.0f}{accuracies[name]:>15.2%}{speed / base:>11.2f}x"
        if with_tcmalloc:
            line += f"{speed / with_tcmalloc:>20.2f}x"
        print(line + "   " + ", ".join(f"{s:,.0f}" for s in speeds[name]))
    print(f"(medians of {args.rounds} round(s); target: cnnspec train, default precision auto, >= 3x the chapter loop "
          f"with equal or better accuracy; load average after: {os.getloadavg()[0]:.1f})")
    if not args.no_augment_costs:
        augment_costs(args, base)


def augment_costs(args: argparse.Namespace, base_speed: float) -> None:
    """What each augmentation adds to a training step, measured in one process and interleaved
    (rounds of: the real ``Run._step`` without augmentation, then with each transform, then the
    transform alone on the same batches), so the machine's load hits every variant alike."""
    import io
    import statistics

    import torch

    sys.path.insert(0, str(REPO))  # this checkout's cnnspec, as the subprocess runs use
    from cnnspec.train.augment import Augmenter, parse_augment
    from cnnspec.train.loop import Run, Tally

    out = Path(tempfile.mkdtemp(prefix="train_speed_augment_", dir=RUNS)) / "run"  # never written to: no fit()
    run = Run(REPO / "specs" / "simple_cnn.yaml", out, {"dataset": "mnist", "data_dir": str(args.data_dir),
                                                        "device": "cpu", "batch_size": args.batch_size},
              reporter_out=io.StringIO())
    variants = {"none": Augmenter([], args.seed)}
    variants.update({text.split(",")[0].split(":")[1].strip(): Augmenter(parse_augment([_flow(text)]), args.seed)
                     for text in AUGMENTATIONS})
    variants["all of the above"] = Augmenter(parse_augment([_flow(t) for t in AUGMENTATIONS]), args.seed)
    batches = torch.randperm(len(run.train_split), generator=torch.Generator().manual_seed(0)).split(args.batch_size)[:100]
    step_ms: dict[str, list[float]] = {name: [] for name in variants}
    alone_ms: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(5):
        for name, augment in variants.items():
            run.augment = augment
            tally = Tally.zeros(run.device)
            started = time.perf_counter()
            for step, index in enumerate(batches):
                run._step(index, tally, 0, step)
            step_ms[name].append((time.perf_counter() - started) / len(batches) * 1e3)
            started = time.perf_counter()
            for step, index in enumerate(batches):
                if augment:
                    augment(run.train_split.images[index], 0, step)
            alone_ms[name].append((time.perf_counter() - started) / len(batches) * 1e3)
    plain = statistics.median(step_ms["none"])
    print()
    print(f"augmentation cost per batch of {args.batch_size} (median of 5 interleaved rounds of 100 steps, "
          f"{torch.get_num_threads()} thread(s), precision {run.precision.label})")
    print(f"{'augmentation':26}{'alone ms':>10}{'% of a step':>13}{'step ms':>10}{'implied images/s':>18}")
    for name in variants:
        alone = statistics.median(alone_ms[name])
        print(f"{name:26}{alone:>10.2f}{alone / plain:>13.1%}{statistics.median(step_ms[name]):>10.2f}"
              f"{args.batch_size * 1e3 / (plain + alone):>18,.0f}")
    print(f"(a training step without augmentation: {plain:.2f} ms; load average after: {os.getloadavg()[0]:.1f})")


def _flow(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
