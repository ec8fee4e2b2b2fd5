"""The model repository on disk (Triton layout) and the table of loaded models the handlers read.

Layout: ``<repo>/<model>/config.pbtxt``, ``<repo>/<model>/labels.txt``,
``<repo>/<model>/<version>/model.onnx``. Model names are checked against ``NAME_PATTERN`` before any
path is built from them, and the resolved folder must sit directly inside the repository, so a
request for ``../x`` never touches the filesystem outside it.

Reloads are atomic: a new set of versions is loaded in a worker thread while the old one keeps
serving, then swapped in with one assignment on the event loop. Handlers pick a version right
before they queue their request (no await in between), so a request lands either on the old
batcher, which finishes its queue before its session is dropped, or on the new one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cnnspec.deploy import model_config
from cnnspec.deploy.model_config import ModelConfig, parse_model_config
from cnnspec.deploy.repository import NAME_PATTERN, VERSION_PATTERN
from cnnspec.errors import did_you_mean

from .batching import Arrivals, Batcher
from .errors import BadRequest, ConfigError, ModelLoadError, NotFound, ServingError
from .metrics import Metrics
from .model import ModelVersion, load_version
from .settings import ServeSettings
from .statistics import VersionStats

log = logging.getLogger("serving")



def check_model_name(name: str) -> str:
    """A model name is a plain folder name: letters, digits, ``_ . -``, not starting with a dot
    (so ``..`` and hidden temporaries are never names)."""
    if not NAME_PATTERN.fullmatch(name):
        raise BadRequest(f"invalid model name {name!r}: use letters, digits, '_', '.' and '-' "
                         "(a plain folder name inside the model repository, not a path)")
    return name


def parse_version(text: str | None) -> int | None:
    """``None`` or "" selects the latest ready version; otherwise a positive integer."""
    if text is None or text == "":
        return None
    if not VERSION_PATTERN.fullmatch(text):
        raise BadRequest(f"invalid model version {text!r}: versions are positive integers")
    return int(text)


class RepositoryFolder:
    """Read-only view of the repository folder."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ServingError(f"model repository {root} is not a folder; create it with `cnnspec export`")

    def model_dir(self, name: str) -> Path:
        check_model_name(name)
        path = (self.root / name).resolve()
        if path.parent != self.root:
            raise BadRequest(f"invalid model name {name!r}: it resolves outside the model repository")
        return path

    def model_names(self) -> list[str]:
        """Folders that hold a config.pbtxt."""
        return sorted(p.name for p in self.root.iterdir()
                      if NAME_PATTERN.fullmatch(p.name) and (p / "config.pbtxt").is_file())

    def read_config(self, name: str) -> ModelConfig:
        path = self.model_dir(name) / "config.pbtxt"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"model '{name}' is not in the model repository (no {name}/config.pbtxt)") from None
        try:
            config = parse_model_config(text, f"{name}/config.pbtxt")
        except model_config.ConfigError as error:
            raise ConfigError(str(error)) from None
        if config.name and config.name != name:
            raise ConfigError(f"{name}/config.pbtxt: error: name is '{config.name}' but the folder is '{name}'")
        return config

    def version_numbers(self, name: str, config: ModelConfig) -> list[int]:
        """Versions whose model file exists, filtered by config's version_policy."""
        folder = self.model_dir(name)
        present = sorted(int(p.name) for p in folder.iterdir()
                         if VERSION_PATTERN.fullmatch(p.name) and (p / config.default_model_filename).is_file())
        kind, values = config.version_policy
        if kind == "latest":
            return present[-values[0]:] if present else []
        if kind == "specific":
            return [v for v in present if v in values]
        return present

    def signature(self, name: str) -> tuple:
        """What the watcher compares: config, labels and every model file's size and mtime."""
        folder = self.model_dir(name)
        if not (folder / "config.pbtxt").is_file():
            raise NotFound(f"model '{name}' is not in the model repository (no {name}/config.pbtxt)")
        entries = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):  # temporaries of atomic writes (cnnspec.deploy.repository)
                continue
            targets = [path] if path.is_file() else sorted(p for p in path.iterdir() if not p.name.startswith("."))
            for target in targets:
                try:
                    stat = target.stat()
                    entries.append((str(target.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
                except OSError:
                    continue
        return tuple(entries)


@dataclass
class LoadedVersion:
    """A version with its batcher and statistics."""

    model: ModelVersion
    batcher: Batcher
    stats: VersionStats


@dataclass
class ModelEntry:
    """A model known to the server: its loaded versions (possibly none) and state."""

    name: str
    config: ModelConfig | None = None
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    state: str = "UNAVAILABLE"
    reason: str = ""
    #: False once unloaded on request (or removed from the repository): the server is no longer
    #: asked to serve it, so it does not count against the server's readiness.
    wanted: bool = True
    arrivals: Arrivals = field(default_factory=Arrivals)  # bodies still being read (the batcher may wait)

    @property
    def latest(self) -> LoadedVersion | None:
        return self.versions[max(self.versions)] if self.versions else None

    def resolve(self, version: int | None) -> LoadedVersion:
        """The version a request asks for (latest when unspecified), or a 404 naming what exists."""
        if self.state != "READY" or not self.versions:
            raise NotFound(f"model '{self.name}' is not ready ({self.state.lower()}{': ' + self.reason if self.reason else ''})")
        if version is None:
            return self.versions[max(self.versions)]
        loaded = self.versions.get(version)
        if loaded is None:
            raise NotFound(f"model '{self.name}' has no version {version}; "
                           f"loaded versions: {', '.join(map(str, sorted(self.versions)))}")
        return loaded


class ModelTable:
    """The live set of models: lookups for handlers, load/unload/reload for the repository API."""

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.folder = RepositoryFolder(settings.model_repository)
        self.entries: dict[str, ModelEntry] = {}
        self._signatures: dict[str, tuple] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task] = set()

    def entry(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            check_model_name(name)
            hint = did_you_mean(name, self.entries)
            raise NotFound(f"unknown model '{name}'" + (f"; {hint}" if hint else
                           f"; models: {', '.join(sorted(self.entries)) or 'none loaded'}"))
        return entry

    def ready(self) -> bool:
        """Every model the server is asked to serve is ready (as Triton's server readiness): one that
        was unloaded on request does not take a replica whose other models serve out of rotation."""
        return all(e.state == "READY" for e in self.entries.values() if e.wanted)

    def load_all_sync(self) -> None:
        """Startup: load every model in the repository; any failure stops the server (fail fast)."""
        for name in self.folder.model_names():
            self._signatures[name] = self.folder.signature(name)
            self._install(name, *self._build(name))

    async def load(self, name: str) -> ModelEntry:
        """Load or reload ``name`` from disk without interrupting requests; errors leave the old one serving."""
        self.folder.model_dir(name)  # validate the name before touching the filesystem
        async with self._locks.setdefault(name, asyncio.Lock()):
            signature = await asyncio.to_thread(self.folder.signature, name)
            config, versions = await asyncio.to_thread(self._build, name)
            self._signatures[name] = signature
            self._install(name, config, versions)
        return self.entries[name]

    async def unload(self, name: str) -> None:
        entry = self.entry(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            old = entry.versions
            entry.versions, entry.state, entry.reason, entry.wanted = {}, "UNAVAILABLE", "unloaded", False
            for number in old:
                self.metrics.model_ready.labels(name, str(number)).set(0)
            self._retire(old.values())

    def _build(self, name: str) -> tuple[ModelConfig, dict[int, ModelVersion]]:
        """Read config and open every version's session (runs in a worker thread)."""
        config = self.folder.read_config(name)
        numbers = self.folder.version_numbers(name, config)
        if not numbers:
            raise ModelLoadError(f"model '{name}' has no version folder with {config.default_model_filename} "
                                 f"(expected {name}/<version>/{config.default_model_filename})")
        folder = self.folder.model_dir(name)
        return config, {v: load_version(folder, v, config, self.settings) for v in numbers}

    def _install(self, name: str, config: ModelConfig, versions: dict[int, ModelVersion]) -> None:
        """Swap the new versions in (event-loop thread or startup), retire the previous ones."""
        entry = self.entries.setdefault(name, ModelEntry(name))
        delay = self.settings.max_queue_delay_us
        if delay is None:
            delay = config.max_queue_delay_us or 0
        model_metrics = self.metrics.for_model(name)
        loaded = {}
        for number, version in versions.items():
            stats = VersionStats(name, number)
            batcher = Batcher(version, delay if config.max_batch_size else 0, config.instance_count,
                              model_metrics, stats, entry.arrivals)
            loaded[number] = LoadedVersion(version, batcher, stats)
        old = entry.versions
        entry.config, entry.versions, entry.state, entry.reason, entry.wanted = config, loaded, "READY", "", True
        for number in old:
            if number not in loaded:
                self.metrics.model_ready.labels(name, str(number)).set(0)
        for number in loaded:
            self.metrics.model_ready.labels(name, str(number)).set(1)
        self._retire(old.values())
        log.info("model %s: serving versions %s", name, sorted(loaded))

    def _retire(self, versions: Iterable[LoadedVersion]) -> None:
        """Let old batchers finish their queued and running batches, then drop their sessions."""
        for loaded in versions:
            try:
                task = asyncio.get_running_loop().create_task(loaded.batcher.drain())
            except RuntimeError:  # at startup, before the loop: nothing can be in flight
                continue
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def watch(self) -> None:
        """Poll the repository; reload models whose files changed, load new ones, unload removed ones."""
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            try:
                await self._poll()
            except Exception as error:  # noqa: BLE001 - the watcher must outlive any one bad poll
                log.error("watch: repository poll failed: %s", error)

    async def _poll(self) -> None:
        names = await asyncio.to_thread(self.folder.model_names)
        for name in names:
            try:
                signature = await asyncio.to_thread(self.folder.signature, name)
                if signature != self._signatures.get(name):
                    self._signatures[name] = signature
                    await self.load(name)
            except (ServingError, OSError) as error:
                log.error("watch: model %s not (re)loaded, what was loaded keeps serving: %s", name, error)
        for name, entry in list(self.entries.items()):
            if name not in names and entry.versions:
                log.info("watch: model %s was removed from the repository; unloading it", name)
                self._signatures.pop(name, None)
                await self.unload(name)

    async def drain(self) -> None:
        """Shutdown: finish every queued and running batch."""
        for entry in self.entries.values():
            for loaded in entry.versions.values():
                await loaded.batcher.drain()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def not_ready_reason(self) -> str:
        return "; ".join(f"{e.name}: {e.state.lower()} {e.reason}".strip() for e in self.entries.values()
                         if e.state != "READY" and e.wanted)
