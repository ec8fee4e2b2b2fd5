"""The top-level spec schema and ``load_spec``: file -> validated, expanded, resolved Spec.

Stages, each collecting every independent error before stopping:
1. source: YAML/JSON text -> data with positions (source.py)
2. header: name, input, labels, train, blocks (pydantic models below)
3. blocks: ``block:`` uses expand to plain layers with stable names (blocks.py)
4. layers: each layer mapping validated by its registered class (layers/)
5. graph: default names, uniqueness, backward-only references (graph.py)
"""


import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Diagnostic, SpecError, did_you_mean
from ..layers import LAYER_TYPES, Layer
from ..layers.base import NAME_PATTERN, PositiveInt
from .source import Document, load_file, load_text
from .validation import diagnose


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

    dataset: str | None = Field(None, description="mnist, fashion_mnist, cifar10, imagefolder or mnist_sample.")
    data_dir: str | None = Field(None, description="Where the dataset lives.")
    epochs: PositiveInt | None = Field(None, description="Passes over the training set.")
    batch_size: PositiveInt | None = Field(None, description="Images per optimisation step.")
    optimizer: Literal["adam", "adamw", "sgd"] | None = Field(None, description="Optimiser.")
    lr: float | None = Field(None, strict=True, gt=0, description="Learning rate.")
    weight_decay: float | None = Field(None, strict=True, ge=0, description="L2 penalty / decoupled weight decay.")
    momentum: float | None = Field(None, strict=True, ge=0, description="SGD momentum.")
    scheduler: Literal["none", "cosine", "step", "onecycle"] | None = Field(None, description="Learning-rate schedule.")
    seed: int | None = Field(None, description="Random seed.")
    device: Literal["auto", "cpu", "cuda", "mps"] | None = Field(None, description="Where to train.")
    workers: int | None = Field(None, ge=0, description="DataLoader worker processes (folder datasets).")


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


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file (YAML or JSON); raise SpecError listing every problem."""
    return spec_from_document(load_file(path))


def parse_spec(text: str, file: str = "<string>", *, json_syntax: bool = False) -> Spec:
    """Like load_spec, from text."""
    return spec_from_document(load_text(text, file, json_syntax=json_syntax))


def spec_from_document(document: Document) -> Spec:
    from .blocks import expand
    from .graph import resolve

    def locate(path: tuple[Any, ...], key: bool = False):
        return document.locate(path, key=key)

    if not isinstance(document.data, dict):
        raise SpecError(
            [Diagnostic("a spec must be a mapping with name, input and layers", locate(()),
                        received=type(document.data).__name__)],
            document.text,
        )
    header, diagnostics = diagnose(SpecHeader, document.data, locate, what="the spec")
    if header is None:
        raise SpecError(diagnostics, document.text)
    raw_layers, diagnostics = expand(header, document)
    nodes: list[Node] = []
    for raw in raw_layers:
        node, problems = _validate_layer(raw, document)
        diagnostics.extend(problems)
        nodes.append(node)
    diagnostics.extend(resolve(nodes, document))
    if diagnostics:
        diagnostics.sort(key=lambda d: (d.location.line, d.location.col) if d.location else (0, 0))
        raise SpecError(diagnostics, document.text)
    return Spec(header.name, header.input, nodes, document, header.labels, header.train, header.description)


def _validate_layer(raw: Any, document: Document) -> tuple[Node, list[Diagnostic]]:
    """Check ``type`` ourselves (to suggest names), then let the layer's class validate the rest."""
    data = raw.data

    def locate(path: tuple[Any, ...], key: bool = False):
        if path and path[0] in raw.field_origins:
            return document.locate(raw.field_origins[path[0]] + tuple(path[1:]), key=key)
        return document.locate(raw.origin + tuple(path), key=key)

    if "type" not in data:
        hint = "give the layer a type, e.g. {type: conv2d, ...}"
        if "block" in data:
            hint = None
        return _placeholder(raw), [Diagnostic(
            "layer has no 'type'", locate(()), expected="one of " + ", ".join(LAYER_TYPES),
            hint=hint, note=raw.note,
        )]
    kind = data["type"]
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        return _placeholder(raw), [Diagnostic(
            f"unknown layer type '{kind}'", locate(("type",)),
            expected="one of " + ", ".join(LAYER_TYPES), received=f"type={kind!r}",
            hint=did_you_mean(str(kind), LAYER_TYPES), note=raw.note,
        )]
    label = f"{kind} layer '{raw.name}'"
    layer, diagnostics = diagnose(LAYER_TYPES[kind], data, locate, what=label, note=raw.note)
    if layer is None:
        return _placeholder(raw), diagnostics
    return Node(raw.name, layer, list(raw.inputs or []), raw.origin, raw.field_origins, raw.note), []


def _placeholder(raw: Any) -> Node:
    """A node for a layer that failed validation, so that reference checks still run."""
    inputs = raw.inputs if isinstance(raw.inputs, list) and all(isinstance(i, str) for i in raw.inputs) else []
    return Node(raw.name, None, list(inputs), raw.origin, raw.field_origins, raw.note)
