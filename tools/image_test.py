#!/usr/bin/env python3
"""`make image-test`: build the CPU image (docker/Dockerfile.cpu) and run it as SageMaker runs it.

    make image-test                                   # = .venv/bin/python tools/image_test.py
    .venv/bin/python tools/image_test.py --no-cache   # rebuild every layer of the image too

Builder: Docker when its daemon answers, else Podman (apt-get installs it when missing; root or sudo).
Base: the Dockerfile's own when a registry and the PyTorch CPU index answer; else a Debian bookworm base
made once with debootstrap and kept (LOCAL_BASE), torch coming from the local wheel in pip's find-links
through a one-package PEP 503 index mounted into the build (../shared/reference/container-build.md).
Checks on SageMaker trees under build/image-test/: train; train stopped by SIGTERM; serve; the 2-host
docker/compose.yaml. Whatever it started is removed at the end, on failure too; exit 1 names the step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "image-test"  # build/ is in .dockerignore: never sent as build context
DOCKERFILE = REPO / "docker" / "Dockerfile.cpu"
IMAGE = "object2vec:cpu"  # the name docker/compose.yaml runs
LOCAL_DEBIAN, LOCAL_BASE = "localhost/debian:bookworm-local", "localhost/object2vec-base:bookworm-py3.11"
LOCAL_PYTAG = "cp311"  # bookworm's python3: the local torch wheel must be built for it
PODMAN_PACKAGES = ["podman", "buildah", "runc", "fuse-overlayfs", "slirp4netns", "uidmap"]
PODMAN_COMPOSE = "podman-compose==1.6.0"  # without Docker there is no `docker compose`
NAME = "o2v-image-test"  # prefix of the containers started here
COMPOSE_PROJECT, COMPOSE_NETWORK = "object2vec-local", "sagemaker-local"  # as in docker/compose.yaml
TIMES: dict[str, float] = {}


class CheckFailed(Exception):
    """A step failed; the message says what was expected and what came."""


# ---- pure logic (tests/unit/test_image_test.py) ---------------------------------------------------
def choose_builder(docker_answers: bool, have_podman: bool) -> tuple[str, bool]:
    """(builder, install it first). Docker only when its daemon answers: a bare CLI is common."""
    return ("docker", False) if docker_answers else ("podman", not have_podman)


def debian_mirror(sources: str, default: str = "http://deb.debian.org/debian") -> str:
    """The main archive in apt sources (deb822 `URIs:` or one-line `deb`), not the security one."""
    uris = re.findall(r"^\s*(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", sources, re.M)
    return next((uri for uri in uris if "security" not in uri), default)


def torch_pin(requirements: str) -> str:
    return re.search(r"^torch==(\S+)", requirements, re.M).group(1)


def default_base(dockerfile: str) -> str:
    return re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.M).group(1)


def find_links(pip_config: str) -> list[Path]:
    """Local folders named by find-links in `pip config list` output (PIP_FIND_LINKS included)."""
    found = [v.removeprefix("file://") for value in re.findall(r"find-links='([^']*)'", pip_config)
             for v in value.split() if not v.startswith(("http://", "https://"))]
    return [Path(v) for v in dict.fromkeys(found)]


def find_torch_wheel(folders: list[Path], version: str, pytag: str = LOCAL_PYTAG,
                     machine: str = platform.machine()) -> Path | None:
    pattern = f"torch-{version}+cpu-{pytag}-{pytag}-*_{machine}.whl"
    return next((w for folder in folders for w in sorted(folder.glob(pattern))), None)


def write_torch_index(wheel: Path, root: Path) -> Path:
    """A PEP 503 index, root/simple, whose one project (torch) links `wheel`, hard-linked beside its
    page so that mounting root alone serves it; returns root."""
    project = root / "simple" / "torch"
    shutil.rmtree(root, ignore_errors=True)
    project.mkdir(parents=True)
    try:
        os.link(wheel, project / wheel.name)
    except OSError:  # another file system
        shutil.copyfile(wheel, project / wheel.name)
    page = '<!DOCTYPE html>\n<html><body><a href="{}">{}</a></body></html>\n'
    (project / "index.html").write_text(page.format(urllib.parse.quote(wheel.name), wheel.name))
    (root / "simple" / "index.html").write_text(page.format("torch/", "torch"))
    return root


def hard_limit(which: int, cap: int) -> int:
    """This process's hard limit `which`, at most `cap`."""
    hard = resource.getrlimit(which)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def containers_conf(nofile: int, nproc: int, runc: bool) -> str:
    """Podman settings for this machine kind: both ulimits given and within what the runtime may set
    (Podman's defaults, 1048576, fail: `error setting rlimit type 7: operation not permitted`; so does
    nofile alone, on nproc, type 6), runc (crun: `cgroups in hybrid mode not supported`), logs and
    events in files and cgroupfs, since systemd may not be running."""
    return (f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            'log_driver = "k8s-file"\n[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'
            + ('runtime = "runc"\n' if runc else ""))


def check_predictions(records: object, count: int, key: str, width: int) -> None:
    """`records`: `count` objects, each with `key` -> `width` numbers."""
    if not (isinstance(records, list) and len(records) == count and all(
            isinstance(r, dict) and isinstance(r.get(key), list) and len(r[key]) == width
            and all(isinstance(v, (int, float)) for v in r[key]) for r in records)):
        raise CheckFailed(f"expected {count} records of {width} {key}, got {str(records)[:300]}")


# ---- processes --------------------------------------------------------------------------------------
def run(cmd: list[str], *, check: bool = True, timeout: float = 600, log: Path | None = None,
        stdin=None) -> subprocess.CompletedProcess:
    """`cmd`, stdout and stderr together as text (also into `log`); CheckFailed on a non-zero exit."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=stdin,
                          timeout=timeout, check=False)
    if log:
        log.write_text(proc.stdout)
    if check and proc.returncode:
        raise CheckFailed(f"`{' '.join(cmd)}` exited {proc.returncode}" + (f" (log: {log})" if log else "")
                          + f":\n{proc.stdout[-3000:]}")
    return proc


class Engine:
    """`docker` or `podman` (behind sudo when not root): `engine("ps")` returns the output."""

    def __init__(self, name: str, as_root: list[str]):
        self.name, self.as_root, self.cmd = name, as_root, [*as_root, name]

    def __call__(self, *args: str, **kw) -> str:
        return run([*self.cmd, *args], **kw).stdout

    def ok(self, *args: str) -> bool:
        return run([*self.cmd, *args], check=False).returncode == 0

    def state(self, name: str, field: str) -> str:
        return self("inspect", "--format", f"{{{{.State.{field}}}}}", name).strip()

    def remove(self, name: str) -> None:
        run([*self.cmd, "rm", "-f", name], check=False)


def step(name: str, fn, *args):
    """Run one step, print and keep its time; any failure becomes CheckFailed naming the step."""
    print(f"[image-test] {time.strftime('%H:%M:%S')} {name} ...", flush=True)
    start = time.monotonic()
    try:
        result = fn(*args)
    except Exception as exc:  # any failure of a step is reported with the step's name
        raise CheckFailed(f"step {name} failed after {time.monotonic() - start:.0f} s: {exc}") from exc
    TIMES[name] = time.monotonic() - start
    print(f"[image-test] {name}: ok in {TIMES[name]:.1f} s", flush=True)
    return result


def answers(url: str, expect: str) -> bool:
    """Whether `url` answers within 5 s with `expect` in its headers or body: a proxy's refusal or a
    closed network does not count."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = str(resp.headers) + resp.read(4_000_000).decode(errors="replace")
            return expect.lower() in text.lower()
    except urllib.error.HTTPError as exc:  # a registry answers 401 with its API version header
        return expect.lower() in str(exc.headers).lower()
    except (OSError, ValueError):
        return False


def apt_install(as_root: list[str], packages: list[str]) -> None:
    apt = [*as_root, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    run([*apt, "update", "-qq"])
    run([*apt, "install", "-y", "-qq", *packages], timeout=1200)


# ---- steps ------------------------------------------------------------------------------------------
def find_builder() -> Engine:
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n", "--preserve-env=CONTAINERS_CONF,O2V_COMPOSE_ROOT"]
    docker = False
    with contextlib.suppress(subprocess.TimeoutExpired):  # a daemon that does not answer is none
        info = run(["docker", "info"], check=False, timeout=30) if shutil.which("docker") else None
        docker = info is not None and info.returncode == 0
    name, install = choose_builder(docker, bool(shutil.which("podman")))
    if install:
        apt_install(as_root, PODMAN_PACKAGES)
    if name == "docker":
        os.environ["DOCKER_BUILDKIT"] = "1"  # --secret needs BuildKit
    else:  # a private containers.conf: the machine's own Podman settings stay as they are
        # nproc: conmon and runc run with it capped at kernel.pid_max (measured: 32768 here, where the
        # hard limit is 96365; 32769 fails)
        pid_max, nr_open = (int(Path(f"/proc/sys/{k}").read_text()) for k in ("kernel/pid_max", "fs/nr_open"))
        (conf := WORK / "containers.conf").write_text(containers_conf(
            hard_limit(resource.RLIMIT_NOFILE, nr_open), hard_limit(resource.RLIMIT_NPROC, pid_max),
            runc=bool(shutil.which("runc"))))
        os.environ["CONTAINERS_CONF"] = str(conf)
    engine = Engine(name, [] if name == "docker" else as_root)
    print(engine("--version").strip())
    return engine


def choose_base(engine: Engine) -> tuple[str | None, Path | None]:
    """(BASE_IMAGE build argument, None for the Dockerfile's; local torch index folder or None)."""
    pin = torch_pin((REPO / "requirements.txt").read_text())
    if (answers("https://registry-1.docker.io/v2/", "Docker-Distribution-Api-Version")
            and answers("https://download.pytorch.org/whl/cpu/torch/", f"torch-{pin}%2Bcpu")):
        print("a registry and the PyTorch CPU index answer: the Dockerfile's base and index")
        base = default_base(DOCKERFILE.read_text())  # Podman wants a registry named, not a short name
        return (None if engine.name == "docker" or "/" in base else "docker.io/library/" + base), None
    if engine.name == "docker":
        raise CheckFailed("no registry or PyTorch index answers, and the local base needs Podman: "
                          "`docker build` cannot mount the local torch index (no -v)")
    config = run([sys.executable, "-m", "pip", "config", "list"]).stdout
    if (wheel := find_torch_wheel(find_links(config), pin)) is None:
        raise CheckFailed(f"no registry answers, and pip's find-links hold no torch-{pin}+cpu "
                          f"{LOCAL_PYTAG} wheel for a local base:\n{config}")
    reuse = engine.ok("image", "exists", LOCAL_BASE)
    print(f"no registry answers: {'reusing' if reuse else 'making'} {LOCAL_BASE}, torch from {wheel}")
    if not reuse:
        make_local_base(engine)
    return LOCAL_BASE, write_torch_index(wheel, WORK / "torchidx")


def make_local_base(engine: Engine) -> None:
    if not engine.ok("image", "exists", LOCAL_DEBIAN):  # kept too: a failed python layer reuses it
        if not shutil.which("debootstrap"):
            apt_install(engine.as_root, ["debootstrap"])
        lists = Path("/etc/apt/sources.list.d")
        sources = [Path("/etc/apt/sources.list"), *lists.glob("*.sources"), *lists.glob("*.list")]
        mirror = debian_mirror("\n".join(p.read_text() for p in sources if p.is_file()))
        rootfs = WORK / "rootfs"
        run([*engine.as_root, "rm", "-rf", str(rootfs)])
        run([*engine.as_root, "debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            timeout=1800, log=WORK / "debootstrap.log")
        tar = subprocess.Popen([*engine.as_root, "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        engine("import", "--change", 'CMD ["bash"]', "-", LOCAL_DEBIAN, stdin=tar.stdout)
        if tar.wait():
            raise CheckFailed(f"tar of {rootfs} exited {tar.returncode}")
        run([*engine.as_root, "rm", "-rf", str(rootfs)])
    (context := WORK / "base").mkdir(exist_ok=True)  # Dockerfile.cpu runs `python -m venv`
    (context / "Containerfile").write_text(
        f"FROM {LOCAL_DEBIAN}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends \\\n    python3 python3-venv python-is-python3 ca-certificates \\\n"
        '    && rm -rf /var/lib/apt/lists/*\nCMD ["python3"]\n')
    engine("build", "-t", LOCAL_BASE, str(context), timeout=1200, log=WORK / "base-build.log")


def build_image(engine: Engine, base: str | None, index: Path | None, no_cache: bool) -> None:
    cmd = ["build", "-f", str(DOCKERFILE), "-t", IMAGE, *(["--no-cache"] if no_cache else [])]
    cmd += ["--build-arg", f"BASE_IMAGE={base}"] if base else []
    cmd += ["-v", f"{index}:/torchidx:ro", "--build-arg", "TORCH_INDEX_URL=file:///torchidx/simple"] \
        if index else []
    ca = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")  # trusts a TLS-intercepting proxy
    cmd += ["--secret", f"id=ca_bundle,src={ca}"] if Path(ca).is_file() else []
    engine(*cmd, str(REPO), timeout=2400, log=WORK / "build.log")
    sizes = {image: int(engine("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
             for image in [IMAGE, *([base] if base else [])]}
    print("image sizes: " + ", ".join(f"{image} {mb:.0f} MB" for image, mb in sizes.items()))


def compose_tree_module() -> ModuleType:
    """docker/make_compose_tree.py, whose load_make_test_dir() gives local_test/make_test_dir.py."""
    spec = importlib.util.spec_from_file_location("mct", REPO / "docker" / "make_compose_tree.py")
    spec.loader.exec_module(module := importlib.util.module_from_spec(spec))
    return module


def make_tree(engine: Engine, name: str, epochs: int, **hyperparameters: object) -> Path:
    """A quick MovieLens tree (make_test_dir.py --quick), with some hyperparameters replaced."""
    mtd, tree = compose_tree_module().load_make_test_dir(), WORK / name
    run([*engine.as_root, "rm", "-rf", str(tree)])  # containers (root) wrote into the last one
    mtd.make_tree(tree, epochs, quick=True, max_users=mtd.QUICK_USERS)
    path = tree / "input" / "config" / "hyperparameters.json"
    hp = {**json.loads(path.read_text()), **{k: str(v) for k, v in hyperparameters.items()}}
    path.write_text(json.dumps(hp, indent=2))
    return tree


def start(engine: Engine, cleanup: contextlib.ExitStack, name: str, tree: Path, *args: str) -> str:
    """`run -d` the image on `tree` as /opt/ml; the container is removed at the end whatever happens."""
    name = f"{NAME}-{name}"
    engine.remove(name)  # a leftover of an interrupted run
    cleanup.callback(engine.remove, name)
    engine("run", "-d", "--name", name, "-v", f"{tree}:/opt/ml", *args)
    return name


def wait_for(engine: Engine, name: str, ready, what: str, limit: float = 300) -> float:
    """Poll until `ready()`; CheckFailed with the log if the container ends or `limit` s pass."""
    start_time = time.monotonic()
    while not ready():
        if engine.state(name, "Running") != "true" or time.monotonic() - start_time > limit:
            raise CheckFailed(f"{name}: {what} did not happen:\n{engine('logs', name)[-3000:]}")
        time.sleep(0.5)
    return time.monotonic() - start_time


def check_train(engine: Engine, cleanup: contextlib.ExitStack) -> Path:
    tree = make_tree(engine, "train", 2)
    name = start(engine, cleanup, "train", tree, IMAGE, "train")
    code, logs = int(engine("wait", name, timeout=900).split()[-1]), engine("logs", name)
    metrics = [line.strip() for line in logs.splitlines() if "#quality_metric" in line]
    if code != 0 or not metrics or not (tree / "model" / "object2vec.pt").is_file():
        raise CheckFailed(f"train: exit {code} (want 0), {len(metrics)} #quality_metric lines, model/ "
                          f"{sorted(p.name for p in (tree / 'model').iterdir())}:\n{logs[-3000:]}")
    print(f"train: exit 0, model/object2vec.pt, {len(metrics)} #quality_metric lines, e.g. {metrics[-1]}")
    return tree


def check_sigterm(engine: Engine, cleanup: contextlib.ExitStack) -> None:
    tree = make_tree(engine, "sigterm", 100, early_stopping_patience=5)  # still training when stopped
    (tree / "checkpoints").mkdir()  # checkpointing is on when the folder exists
    name = start(engine, cleanup, "sigterm", tree, IMAGE, "train")
    wait_for(engine, name, lambda: "training on " in engine("logs", name), "the training loop's start")
    started = time.monotonic()
    engine("stop", "-t", "120", name, timeout=180)  # SageMaker: SIGTERM, SIGKILL 120 s later
    seconds, code = time.monotonic() - started, int(engine.state(name, "ExitCode"))
    logs = engine("logs", name)
    stopped = [line.strip() for line in logs.splitlines() if "stopped by SIGTERM" in line]
    if code != 143 or not stopped or not (tree / "checkpoints" / "object2vec-checkpoint.pt").is_file():
        raise CheckFailed(f"stopped train: exit {code} (want 143), no checkpoint or no 'stopped by "
                          f"SIGTERM':\n{logs[-3000:]}")
    print(f"SIGTERM: exit 143 in {seconds:.1f} s, checkpoints/object2vec-checkpoint.pt; {stopped[0]}")


def http(url: str, body: bytes | None = None, content_type: str = "") -> str:
    request = urllib.request.Request(url, body, {"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc


def pings(url: str) -> bool:
    with contextlib.suppress(OSError, CheckFailed):
        return http(url + "/ping") is not None
    return False


def check_serve(engine: Engine, tree: Path, cleanup: contextlib.ExitStack) -> None:
    from o2vtools.process import free_port

    port = free_port()
    name = start(engine, cleanup, "serve", tree, "-p", f"{port}:8080", IMAGE, "serve")
    url = f"http://127.0.0.1:{port}"
    print(f"serve: /ping 200 after {wait_for(engine, name, lambda: pings(url), '/ping 200', 180):.1f} s")
    payloads = REPO / "local_test" / "payloads"
    scores = http(url + "/invocations", (payloads / "scores.json").read_bytes(), "application/json")
    check_predictions(json.loads(scores)["predictions"], 4, "scores", 1)  # regression: one value each
    width = int(json.loads((tree / "input/config/hyperparameters.json").read_text())["enc_dim"])
    lines = http(url + "/invocations", (payloads / "embeddings.jsonl").read_bytes(), "application/jsonlines")
    check_predictions([json.loads(x) for x in lines.splitlines() if x.strip()], 3, "embeddings", width)
    params = json.loads(http(url + "/execution-parameters"))
    if not {"MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"} <= set(params):
        raise CheckFailed(f"/execution-parameters: {params}")
    print(f"serve: /invocations JSON (4 scores) and JSON Lines (3 embeddings of {width}); {params}")
    started = time.monotonic()
    engine("stop", "-t", "30", name, timeout=60)  # SageMaker: SIGTERM, SIGKILL 30 s later
    if (code := int(engine.state(name, "ExitCode"))) != 0:
        raise CheckFailed(f"serve: exit {code} on stop (want 0):\n{engine('logs', name)[-3000:]}")
    print(f"serve: graceful stop, exit 0 in {time.monotonic() - started:.1f} s")


def check_compose(engine: Engine, cleanup: contextlib.ExitStack) -> None:
    root, mct = WORK / "compose", compose_tree_module()
    run([*engine.as_root, "rm", "-rf", str(root)])
    mct.make_trees(root, 2, True, mct.load_make_test_dir().QUICK_USERS)
    os.environ["O2V_COMPOSE_ROOT"] = str(root)  # compose.yaml mounts ${O2V_COMPOSE_ROOT}/algo-N
    if engine.name == "docker":
        compose = ["docker", "compose"]
    else:  # podman-compose, into the venv on first use
        if not (exe := Path(sys.executable).parent / "podman-compose").exists():
            run([sys.executable, "-m", "pip", "install", "--quiet", PODMAN_COMPOSE])
        compose = [*engine.as_root, str(exe)]
    compose += ["-f", str(REPO / "docker" / "compose.yaml")]
    network_was_there = engine.ok("network", "inspect", COMPOSE_NETWORK)

    def down() -> None:
        run([*compose, "down"], check=False, timeout=300)
        if not network_was_there and engine.ok("network", "inspect", COMPOSE_NETWORK):
            run([*engine.cmd, "network", "rm", COMPOSE_NETWORK], check=False)

    down()  # containers of an interrupted run
    cleanup.callback(down)
    run([*compose, "up", "--no-build"], timeout=900, log=WORK / "compose.log")  # until both have exited
    ids = engine("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={COMPOSE_PROJECT}").split()
    hosts = {engine("inspect", "--format", "{{.Config.Hostname}}", i).strip(): i for i in ids}
    if sorted(hosts) != ["algo-1", "algo-2"]:
        raise CheckFailed(f"compose: containers {hosts} (want algo-1 and algo-2)")
    for host, cid in sorted(hosts.items()):
        code, logs = int(engine.state(cid, "ExitCode")), engine("logs", cid)
        if code != 0 or "world size 2" not in logs:
            raise CheckFailed(f"compose {host}: exit {code} (want 0) or no 'world size 2':\n{logs[-3000:]}")
    models = {host: sorted(p.name for p in (root / host / "model").iterdir()) for host in hosts}
    if "object2vec.pt" not in models["algo-1"] or models["algo-2"]:
        raise CheckFailed(f"compose: model/ files per host {models} (want them on algo-1 only)")
    print(f"compose: algo-1 and algo-2 exit 0, world size 2; model/ on algo-1 only: {models['algo-1']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer of the image")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with contextlib.ExitStack() as cleanup:  # removes what was started, in reverse order, always
        try:
            engine = step("builder", find_builder)
            base, index = step("base", choose_base, engine)
            step("build", build_image, engine, base, index, args.no_cache)
            tree = step("train", check_train, engine, cleanup)
            step("sigterm", check_sigterm, engine, cleanup)
            step("serve", check_serve, engine, tree, cleanup)
            step("compose", check_compose, engine, cleanup)
        except CheckFailed as exc:
            print(f"[image-test] FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            print("[image-test] removing the containers and networks started here", flush=True)
    print(f"[image-test] passed in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in TIMES.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
