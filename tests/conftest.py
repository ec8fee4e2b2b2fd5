"""Shared pytest fixtures. Each area adds its fixtures below its own marker comment."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# --- serving: a model repository written by the real `cnnspec export` pipeline ------------------

@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODEL_REPO/simple_cnn/{config.pbtxt,labels.txt,1/model.onnx} from specs/simple_cnn.yaml.

    The weights are the seeded initial ones (no training, to keep the suite fast); the checkpoint
    and the export go through cnnspec.train.checkpoint and cnnspec.export exactly as `cnnspec export` does.
    Tests that change a repository copy this one first (shutil.copytree)."""
    import torch

    import cnnspec
    from cnnspec.train.checkpoint import save_checkpoint
    from cnnspec.export.pipeline import ExportOptions, export
    from cnnspec.spec.model import load_spec

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("serving")
    spec = load_spec(REPO_ROOT / "specs" / "simple_cnn.yaml")
    torch.manual_seed(0)
    model = cnnspec.build_model(spec)
    payload = {
        "cnnspec_version": cnnspec.__version__, "spec_name": spec.name, "spec_text": spec.text,
        "spec_hash": spec.hash, "model": model.state_dict(), "optimizer": None, "scheduler": None,
        "epoch": 0, "metrics": [], "best_eval_accuracy": None, "train_config": {},
        "dataset": {"name": "mnist", "mean": [0.1307], "std": [0.3081], "labels": [str(i) for i in range(10)],
                    "input_shape": [1, 28, 28]},
    }
    save_checkpoint(folder / "untrained.pt", payload)
    export(ExportOptions(source=folder / "untrained.pt", repo=folder / "model_repository", data_check=False))
    return folder / "model_repository"
