"""Deployment recipe: serving/Dockerfile, docker-compose.yml and .dockerignore.

There is no Docker engine on these machines, so the recipe is proved in two ways:

- the compose file is loaded by a Compose Specification parser (the `compose-spec` package, the
  Rust `compose_spec` crate: it rejects unknown keys with their place), and the Dockerfile is
  parsed into instructions, and the properties that matter are asserted on both;
- the Dockerfile is replayed outside Docker: a fresh venv (no system site-packages, so no torch)
  gets exactly the Dockerfile's `RUN pip install`, a fresh directory gets exactly what its COPY
  lines copy, and its CMD (read from the file, only the repository, host and port substituted)
  serves a model exported by `cnnspec export` on 127.0.0.1, probed by the HEALTHCHECK command and one inference.

Everything is read from the files themselves, so the tests and the recipe cannot drift apart.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from compose_spec import PyOptions, parse_duration

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "serving" / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REQUIREMENTS = REPO_ROOT / "serving" / "requirements.txt"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its argument text, its first line."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comment lines dropped, backslash continuations joined (as Docker)."""
    instructions, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    return instructions


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/HEALTHCHECK (shell form is refused: no signals, no PID 1)."""
    assert args.startswith("["), f"expected exec form (a JSON array), got: {args}"
    return json.loads(args)


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults, e.g. {'PYTHON_IMAGE': 'python:3.11-slim', 'ORT_PACKAGE': 'onnxruntime'}."""
    args = {}
    for ins in instructions:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
    return args


def env_vars(instructions: list[Instruction]) -> dict[str, str]:
    """ENV key=value pairs, in order."""
    env = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword}, found {len(found)}"
    return found[0]


def healthcheck_command(ins: Instruction) -> list[str]:
    """The exec-form command of `HEALTHCHECK [--options] CMD [...]`."""
    _, _, command = ins.args.partition(" CMD ")
    return exec_form(command.strip())


def shell_commands(run: str) -> list[str]:
    """The simple commands of a RUN line, split at && ; and if/then/fi keywords."""
    parts = re.split(r"&&|;|\bthen\b|\bfi\b", run)
    return [p.strip() for p in parts if p.strip() and not p.strip().startswith("if ")]


def requirement_names(path: Path) -> list[str]:
    """Distribution names in a requirements file (comments and version specifiers dropped)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower())
    return names


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose():
    """docker-compose.yml as loaded by the Compose Specification parser (YAML merge keys applied)."""
    return PyOptions(apply_merge=True).from_yaml(COMPOSE_FILE.read_text())


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_base_is_slim_python(dockerfile):
    image = only(dockerfile, "FROM").args
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: build_args(dockerfile)[m.group(1)], image)
    assert re.fullmatch(r"python:3\.\d+-slim", resolved), resolved


def test_dockerfile_runs_as_a_non_root_user_before_cmd(dockerfile):
    keywords = [i.keyword for i in dockerfile]
    users = [i for i in dockerfile[: keywords.index("CMD")] if i.keyword == "USER"]
    assert users, "no USER before CMD: the service would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user


def test_dockerfile_healthcheck_probes_readiness_without_curl(dockerfile):
    command = healthcheck_command(only(dockerfile, "HEALTHCHECK"))
    assert command[:2] == ["python", "-c"], command
    assert "http://127.0.0.1:8000/v2/health/ready" in command[2]


def test_dockerfile_cmd_serves_the_mounted_repository_on_port_8000(dockerfile):
    assert exec_form(only(dockerfile, "CMD").args) == [
        "python", "-m", "serving", "--model-repository", "/models", "--host", "0.0.0.0", "--port", "8000"]
    assert only(dockerfile, "EXPOSE").args == "8000"


def test_dockerfile_installs_exactly_the_serving_requirements(dockerfile):
    copies = [i.args.split() for i in dockerfile if i.keyword == "COPY"]
    assert ["serving/requirements.txt", "serving/requirements.txt"] in copies
    pip_installs = [c for i in dockerfile if i.keyword == "RUN" for c in shell_commands(i.args)
                    if c.startswith("pip install")]
    # The CPU image (ORT_PACKAGE's default) runs only the first; the GPU image swaps onnxruntime.
    assert pip_installs == ["pip install -r serving/requirements.txt", 'pip install "$ORT_PACKAGE"']
    assert build_args(dockerfile)["ORT_PACKAGE"] == "onnxruntime"
    assert "onnxruntime" in requirement_names(REQUIREMENTS)


def copied_sources(dockerfile: list[Instruction]) -> list[str]:
    """Every source path of every COPY (the last word of a COPY is its destination)."""
    return [s for i in dockerfile if i.keyword == "COPY" for s in i.args.split()[:-1]]


def imported_modules(path: Path, everywhere: bool) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved); ``everywhere``
    includes imports inside functions, else only those run when the module is imported."""
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    modules = set()
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            modules.add(module)
            modules |= {f"{module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return modules


def cnnspec_files_serving_needs() -> set[str]:
    """Repository paths of every cnnspec module the service can import: all imports of serving/ and
    cnnspec/deploy/ (lazy ones too: they run while serving), followed through the module-level
    imports of each cnnspec module they reach, with each package's __init__.py."""
    todo = [(path, True) for folder in ("serving", "cnnspec/deploy") for path in (REPO_ROOT / folder).rglob("*.py")]
    needed: set[str] = set()
    while todo:
        path, everywhere = todo.pop()
        for module in imported_modules(path, everywhere):
            if module != "cnnspec" and not module.startswith("cnnspec."):
                continue
            parts = module.split(".")
            candidates = [REPO_ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
            candidates.append(REPO_ROOT.joinpath(*parts[:-1], parts[-1] + ".py"))
            for found in candidates:
                name = found.relative_to(REPO_ROOT).as_posix()
                if found.is_file() and name not in needed:
                    needed.add(name)
                    todo.append((found, name.startswith("cnnspec/deploy/")))
    return needed


def test_dockerfile_copies_the_service_and_cnnspecs_deploy_room(dockerfile):
    sources = copied_sources(dockerfile)
    assert "serving/" in sources
    assert sorted(s for s in sources if s.startswith("cnnspec")) == [
        "cnnspec/__init__.py", "cnnspec/deploy/", "cnnspec/errors.py"]
    assert not [s for s in sources if not s.startswith(("serving/", "cnnspec/"))], sources


def test_everything_serving_imports_from_cnnspec_is_in_the_image(dockerfile):
    needed = cnnspec_files_serving_needs()
    assert {"cnnspec/__init__.py", "cnnspec/errors.py", "cnnspec/deploy/images.py",
            "cnnspec/deploy/sessions.py"} <= needed
    sources = [s for s in copied_sources(dockerfile) if s.startswith("cnnspec")]
    missing = [n for n in needed if not any(n == s or (s.endswith("/") and n.startswith(s)) for s in sources)]
    assert not missing, f"serving imports {missing}, which the Dockerfile does not copy"


def test_dockerignore_lets_every_copied_source_into_the_build_context(dockerfile):
    allowed = [p[1:] for p in DOCKERIGNORE.read_text().splitlines() if p.startswith("!")]
    shut_out = [s for s in copied_sources(dockerfile)
                if not any(s == a or (a.endswith("/") and s.startswith(a)) for a in allowed)]
    assert not shut_out, f".dockerignore keeps {shut_out} out of the build context (allowed: {allowed})"


def test_no_torch_in_the_image(dockerfile):
    names = requirement_names(REQUIREMENTS)
    assert not [n for n in names if "torch" in n], names
    assert not [i for i in dockerfile if "torch" in i.args.lower()]
    assert "torch" not in COMPOSE_FILE.read_text().lower()


def test_dockerignore_sends_only_the_service_to_the_build():
    patterns = [p for p in DOCKERIGNORE.read_text().splitlines() if p and not p.startswith("#")]
    assert patterns[:2] == ["*", "!serving/"], patterns


# ---------------------------------------------------------------- compose


def test_compose_file_is_valid_compose_specification(compose):
    compose.validate()
    assert set(compose.service_names()) == {"serving", "serving-gpu"}


def test_compose_parser_rejects_a_misspelt_key():
    """The parser used above is strict: one typo in the service fails with the key's name."""
    broken = COMPOSE_FILE.read_text().replace("    profiles: [gpu]", "    profile: [gpu]")
    with pytest.raises(ValueError, match="profile"):
        PyOptions(apply_merge=True).from_yaml(broken)


@pytest.mark.parametrize("name", ["serving", "serving-gpu"])
def test_compose_service_is_locked_down(compose, dockerfile, name):
    service = compose.get_service(name)
    assert service.build.dockerfile == "serving/Dockerfile" and service.build.context == "."
    assert service.ports and all(p.host_ip == "127.0.0.1" and p.target == 8000 for p in service.ports)
    (volume,) = service.volumes
    assert (volume.source, volume.target, volume.read_only) == ("./model_repository", "/models", True)
    assert service.healthcheck.test == ["CMD", *healthcheck_command(only(dockerfile, "HEALTHCHECK"))]
    limits = service.deploy.resources.limits
    assert limits.cpus and limits.memory
    assert service.restart == "unless-stopped"
    assert service.read_only is True and service.tmpfs
    assert service.cap_drop == {"ALL"} or service.cap_drop == ["ALL"]
    assert "no-new-privileges:true" in service.security_opt


def test_compose_stop_waits_longer_than_the_service_drains(compose):
    """`docker compose stop` sends SIGTERM, then SIGKILL after stop_grace_period: the drain must fit."""
    from serving.settings import ServeSettings

    drain = ServeSettings.model_fields["drain_timeout_s"].default
    for name in compose.service_names():
        assert parse_duration(compose.get_service(name).stop_grace_period) > drain


def test_compose_cpu_service_starts_by_default_and_gpu_one_only_with_its_profile(compose):
    assert not compose.get_service("serving").profiles
    assert compose.get_service("serving-gpu").profiles == {"gpu"}
    published = [p.published for s in ("serving", "serving-gpu") for p in compose.get_service(s).ports]
    assert len(set(published)) == len(published), f"both services would bind the same port: {published}"


def test_compose_gpu_profile_reserves_an_nvidia_device_and_runs_on_cuda(compose, dockerfile):
    service = compose.get_service("serving-gpu")
    (device,) = service.deploy.resources.reservations.devices
    assert device.driver == "nvidia" and "gpu" in device.capabilities
    assert service.build.args["ORT_PACKAGE"].startswith("onnxruntime-gpu")
    assert service.command == [*exec_form(only(dockerfile, "CMD").args), "--device", "cuda"]


# ---------------------------------------------------------------- the recipe, replayed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replay_build(dockerfile: list[Instruction], root: Path, venv: Path) -> tuple[Path, dict[str, str]]:
    """Replay the Dockerfile's build steps with ``root`` as the image's /: returns (WORKDIR, env).

    COPY copies from the repository root; RUN executes pip lines with the venv first on PATH;
    the only other RUN allowed is the `useradd` for the non-root user, which is not replayed here.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(build_args(dockerfile))
    env.update(env_vars(dockerfile))
    env.pop("PIP_NO_CACHE_DIR", None)  # the image drops pip's cache to stay small; here the cache saves minutes
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    workdir = root
    for ins in dockerfile:
        if ins.keyword == "WORKDIR":
            workdir = root / ins.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            *sources, target = ins.args.split()
            for source in sources:
                copy(REPO_ROOT / source, workdir / target, into=target.endswith("/") and len(sources) > 1)
        elif ins.keyword == "RUN":
            if ins.args.startswith("useradd"):
                continue
            assert ins.args.startswith("pip install"), f"line {ins.line}: teach the replay this RUN"
            done = subprocess.run(["/bin/sh", "-c", ins.args], cwd=workdir, env=env, timeout=180,
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"line {ins.line} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return workdir, env


def copy(source: Path, destination: Path, into: bool) -> None:
    """COPY semantics: a folder's contents into destination; a file to destination, or into it."""
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile"))
        return
    if into:
        destination = destination / source.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)


def wait_ready(process: subprocess.Popen, port: int, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready after {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_recipe_installs_and_serves_from_a_fresh_venv(dockerfile, exported_repository, tmp_path):
    import onnxruntime as ort

    model_path = exported_repository / "simple_cnn" / "1" / "model.onnx"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    workdir, env = replay_build(dockerfile, tmp_path / "image", venv)

    has_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert has_torch.returncode != 0, "torch is importable where the image has none"
    assert sorted(p.name for p in workdir.iterdir()) == ["cnnspec", "serving"]

    port = free_port()
    substitute = {"--model-repository": str(exported_repository), "--host": "127.0.0.1",
                  "--port": str(port)}
    command = exec_form(only(dockerfile, "CMD").args)
    command = [substitute.get(command[i - 1], arg) if i else arg for i, arg in enumerate(command)]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(server, port, log)
        probe = healthcheck_command(only(dockerfile, "HEALTHCHECK"))
        probe = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in probe]
        assert subprocess.run(probe, env=env, timeout=30).returncode == 0

        x = np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)
        body = json.dumps({"id": "deploy-1", "inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x.ravel().tolist()}]})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/simple_cnn/infer",
                                         data=body.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            reply = json.loads(answer.read())
        (output,) = reply["outputs"]
        expected = ort.InferenceSession(str(model_path)).run(None, {"input": x})[0]
        assert reply["id"] == "deploy-1" and output["shape"] == [1, 10]
        np.testing.assert_allclose(np.asarray(output["data"], dtype=np.float32).reshape(1, 10), expected,
                                   rtol=1e-5, atol=1e-5)
    finally:
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            returncode = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert returncode == 0, log.read_text()[-3000:]
