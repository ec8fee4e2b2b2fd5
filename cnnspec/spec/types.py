"""The spec's data types: the header schema (pydantic models) and the resolved Spec and its Nodes.

Leaf module of the spec package: blocks.py, graph.py and model.py import it, it imports none of
them, so imports inside spec/ run one way.
"""


import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..layers import Layer
from ..layers.base import NAME_PATTERN, PositiveInt
from ..train.options import DatasetName, DeviceName, MonitorName, OptimizerName, PrecisionName, SchedulerName
from .source import Document


class InputSpec(BaseModel):
    """The model input, one image: channels x height x width."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    channels: PositiveInt = Field(description="Image channels (1 for grey, 3 for RGB).")
    height: PositiveInt = Field(description="Image height in pixels.")
    width: PositiveInt = Field(description="Image width in pixels.")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class TrainConfig(BaseModel):
    """Optional training defaults; ``cnnspec train`` flags override them."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    dataset: DatasetName | None = Field(None, description="The dataset to train on (`cnnspec train --help` lists them).")
    data_dir: str | None = Field(None, description="Where the dataset lives.")
    epochs: PositiveInt | None = Field(None, description="Passes over the training set.")
    batch_size: PositiveInt | None = Field(None, description="Images per optimisation step.")
    optimizer: OptimizerName | None = Field(None, description="Optimiser.")
    lr: float | None = Field(None, strict=True, gt=0, description="Learning rate.")
    weight_decay: float | None = Field(None, strict=True, ge=0, description="L2 penalty / decoupled weight decay.")
    momentum: float | None = Field(None, strict=True, ge=0, description="SGD momentum.")
    scheduler: SchedulerName | None = Field(None, description="Learning-rate schedule.")
    seed: int | None = Field(None, description="Random seed.")
    device: DeviceName | None = Field(None, description="Where to train.")
    precision: PrecisionName | None = Field(None, description="How a step computes: auto, fp32, or bf16/fp16 mixed precision.")
    workers: int | None = Field(None, ge=0, description="DataLoader worker processes (folder datasets).")
    augment: list[Any] | None = Field(
        None, description="Transforms applied to training batches only: [{type: random_crop, size: 28, padding: 2}, ...] "
        "(cnnspec augmentations lists them).")
    val_split: float | None = Field(None, strict=True, ge=0, lt=1,
                                    description="Fraction of the training set held out for validation (stratified, by seed).")
    early_stopping: PositiveInt | None = Field(
        None, description="Stop after this many epochs without a better monitored validation figure.")
    monitor: MonitorName | None = Field(
        None, description="The validation figure that picks best.pt and drives early stopping.")
    label_smoothing: float | None = Field(None, strict=True, ge=0, lt=1, description="Label smoothing of the training loss.")
    grad_clip: float | None = Field(None, strict=True, gt=0, description="Clip the gradients' total L2 norm to this.")
    warmup_epochs: float | None = Field(None, strict=True, ge=0,
                                        description="Linear learning-rate warm-up from 0 over this many epochs.")


class BlockDefinition(BaseModel):
    """A reusable, parameterised group of layers; ``$arg`` strings are replaced by argument values."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    args: dict[str, Any] = Field(default_factory=dict, description="Argument names and their default values.")
    layers: list[dict[str, Any]] = Field(min_length=1, description="The block's layers; 'input' names the block's input.")


class BlockUse(BaseModel):
    """A use of a block in a layer list, optionally repeated (a ResNet stage, a VGG stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    block: str = Field(description="Name of a block under 'blocks'.")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="Prefix for the expanded layer names; also names the block's output.")
    repeat: PositiveInt = Field(1, description="How many copies to chain; copy i is named <name>_<i>_<layer>.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Argument values for every copy.")
    first: dict[str, Any] = Field(default_factory=dict, description="Argument values for copy 0 only (e.g. stride 2).")
    inputs: list[str] | None = Field(None, min_length=1, max_length=1, description="The block's input; default: the previous layer.")


class SpecHeader(BaseModel):
    """Everything in a spec file except the contents of the layer list."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(pattern=NAME_PATTERN, description="Model name, e.g. simple_cnn.")
    description: str | None = Field(None, description="What the model is and what it teaches.")
    input: InputSpec = Field(description="{channels, height, width} of one input image.")
    labels: list[str] | None = Field(None, min_length=1, description="Class names, in output order.")
    blocks: dict[str, BlockDefinition] = Field(default_factory=dict, description="Reusable layer groups.")
    layers: list[dict[str, Any]] = Field(min_length=1, description="Layers in execution order.")
    train: TrainConfig | None = Field(None, description="Training defaults.")


@dataclass
class Node:
    """One layer after expansion: its final name, its validated config, its resolved inputs, and
    where it came from (for error locations). ``layer`` is None only while reporting errors."""

    name: str
    layer: Layer | None
    inputs: list[str]
    origin: tuple[Any, ...]
    field_origins: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    note: str | None = None


@dataclass
class Spec:
    """A loaded, valid spec: header fields plus resolved nodes in execution order."""

    name: str
    input: InputSpec
    nodes: list[Node]
    document: Document
    labels: list[str] | None = None
    train: TrainConfig | None = None
    description: str | None = None

    @property
    def text(self) -> str:
        return self.document.text

    @property
    def file(self) -> str:
        return self.document.file

    @property
    def hash(self) -> str:
        """sha256 of the spec text: what checkpoints and exported models are tied to."""
        return hashlib.sha256(self.document.text.encode("utf-8")).hexdigest()

    @property
    def output(self) -> str:
        return self.nodes[-1].name
