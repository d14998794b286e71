"""tools/image_test.py (`make image-test`): its pure logic, without Podman, Docker or a build."""

import importlib.util
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("image_test", REPO / "tools" / "image_test.py")
image_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(image_test)


@pytest.mark.parametrize(("docker_answers", "have_podman", "expected"), [
    (True, True, ("docker", False)),
    (True, False, ("docker", False)),
    (False, True, ("podman", False)),  # a docker CLI without a daemon is not a builder
    (False, False, ("podman", True)),
])
def test_choose_builder(docker_answers, have_podman, expected):
    assert image_test.choose_builder(docker_answers, have_podman) == expected


def test_debian_mirror_reads_both_source_formats_and_skips_security():
    deb822 = ("Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
              "URIs: http://mirror.example/debian\nSuites: bookworm\n\n"
              "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n")
    assert image_test.debian_mirror(deb822) == "http://mirror.example/debian"
    one_line = ("deb http://deb.debian.org/debian-security bookworm-security main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm main\n")
    assert image_test.debian_mirror(one_line) == "http://other.example/debian"
    assert image_test.debian_mirror("# nothing\n") == "http://deb.debian.org/debian"


def test_pins_come_from_the_repository_files():
    assert image_test.torch_pin((REPO / "requirements.txt").read_text())[0].isdigit()
    assert image_test.default_base(image_test.DOCKERFILE.read_text()).startswith("python:")


def test_find_links_and_the_local_torch_wheel(tmp_path):
    config = (":env:.find-links='/opt/wheels'\nglobal.find-links='/opt/wheels file:///srv/w "
              "https://example.org/w'\nglobal.cert='/etc/ssl/certs/ca-certificates.crt'\n")
    assert image_test.find_links(config) == [Path("/opt/wheels"), Path("/srv/w")]
    empty, wheels = tmp_path / "empty", tmp_path / "wheels"
    empty.mkdir(), wheels.mkdir()
    for name in ["torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl",  # another Python
                 "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # PyPI's CUDA build
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]:
        (wheels / name).touch()
    found = image_test.find_torch_wheel([empty, wheels], "2.13.0", "cp311", "x86_64")
    assert found.name == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert image_test.find_torch_wheel([wheels], "2.12.0", "cp311", "x86_64") is None


def test_pip_installs_torch_from_the_written_index(tmp_path):
    """The index pip reads in the build (file:///torchidx/simple), here at a temporary path."""
    wheel = tmp_path / "torch-0.0.1+cpu-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        info = "torch-0.0.1+cpu.dist-info/"
        zf.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 0.0.1+cpu\n")
        zf.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        zf.writestr(info + "RECORD", "")
    root = image_test.write_torch_index(wheel, tmp_path / "torchidx")
    assert (root / "simple" / "torch" / wheel.name).read_bytes() == wheel.read_bytes()
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--quiet",
                    "--only-binary=:all:", "--index-url", (root / "simple").as_uri(), "torch==0.0.1",
                    "-d", str(out)], check=True, timeout=120)
    assert [p.name for p in out.iterdir()] == [wheel.name]


def test_containers_conf_gives_both_ulimits_within_the_hard_limits():
    conf = image_test.containers_conf(20000, 32768, runc=True)
    assert 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n' in conf
    assert conf.endswith('[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n')
    assert "runtime" not in image_test.containers_conf(1024, 512, runc=False)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert image_test.hard_limit(resource.RLIMIT_NOFILE, 64) == (64 if hard == resource.RLIM_INFINITY
                                                                 else min(hard, 64))


def test_check_predictions():
    image_test.check_predictions([{"scores": [3.5]}, {"scores": [4]}], 2, "scores", 1)
    for bad in [[{"scores": [3.5]}], [{"scores": [1, 2]}, {"scores": [1]}], [{"embeddings": [1]}] * 2,
                {"scores": [1]}, [{"scores": ["1"]}, {"scores": [1]}]]:
        with pytest.raises(image_test.CheckFailed):
            image_test.check_predictions(bad, 2, "scores", 1)


def test_make_has_the_target():
    makefile = (REPO / "Makefile").read_text()
    assert "image-test: $(STAMP)\n\t$(BIN)/python tools/image_test.py" in makefile
