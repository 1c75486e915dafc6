"""The package as a gateway gets it: `python -m build` makes a wheel and an sdist with the
console's static files and the deploy/ templates inside, the wheel installs into a fresh venv,
and `mashang install --root DIR` from that venv, run away from any clone, writes its tree from
the templates inside the installed package.

Offline on purpose (CI has no index to spare): the build runs `--no-isolation` with this
venv's setuptools (the test extra requires it), and the wheel goes into the new venv with
`pip install --no-deps --no-index`; its dependencies (paho-mqtt, aiohttp, pydantic, …) are
this venv's, reached through a .pth file naming this venv's site-packages (which adds that
folder to sys.path but runs none of its own .pth files: the clone's editable install stays
out, and the test checks that the code imported is the wheel's).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from edge.tools.broker_acl import shipped_acl

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ["mashang-gateway.service", "mosquitto.conf", "mosquitto.acl",
             "grafana-dashboard.json", "prometheus-rules.yml", "prometheus-rules.test.yml"]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def source_copy(folder: Path) -> Path:
    """The project's files (tracked, or new and not ignored) in a folder of their own, so
    that the build leaves nothing (build/, *.egg-info) in the work tree."""
    listed = run(["git", "-C", str(REPO), "ls-files", "--cached", "--others",
                  "--exclude-standard", "-z"]).stdout.split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, folder / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet in git
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            target.write_bytes(source.read_bytes())
    return folder


def test_the_wheel_installs_and_mashang_install_runs_from_it(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)])
    (wheel,) = dist.glob("mashang_edge-*.whl")
    (sdist,) = dist.glob("mashang_edge-*.tar.gz")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    for name in TEMPLATES:
        assert f"edge/deploy/{name}" in names, f"the wheel lacks edge/deploy/{name}"
    assert "cloud_bridge/console/static/index.html" in names
    assert "mashang = mashang.cli:main" in entry_points
    assert not [n for n in names if n.startswith(("tests/", "lab/"))], "tests or lab in the wheel"
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in TEMPLATES:
        assert f"edge/deploy/{name}" in members, f"the sdist lacks edge/deploy/{name}"
    assert "pyproject.toml" in members and "cloud_bridge/console/static/app.js" in members

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)])
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"]).stdout.strip())
    (site / "_dependencies_from_the_test_venv.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"  # no clone here, nor above it
    elsewhere.mkdir()
    where = run([str(python), "-c", "import edge, cloud_bridge.console, mashang; "
                 "print(edge.__file__)"], cwd=elsewhere).stdout.strip()
    assert where.startswith(str(site)), f"imported {where}, not the installed wheel"
    mashang = venv / "bin" / "mashang"
    assert "install" in run([str(mashang), "--help"], cwd=elsewhere).stdout

    key = tmp_path / "key"
    key.write_text("key-of-gw-from-the-wheel\n")
    root = tmp_path / "target"
    installed = run([str(mashang), "install", "--root", str(root), "--gateway-id", "gw-wheel",
                     "--central", "https://central.example", "--key-file", str(key)],
                    cwd=elsewhere)
    assert "gw-wheel" in installed.stdout
    package = site / "edge" / "deploy"
    assert (root / "etc/mosquitto/conf.d/mashang.conf").read_bytes() == \
        (package / "mosquitto.conf").read_bytes()
    assert (root / "etc/mosquitto/mashang.acl").read_text() == shipped_acl()
    unit = (root / "etc/systemd/system/mashang-gateway.service").read_text()
    assert f"ExecStart={mashang} gateway --config /etc/mashang/gateway.toml" in unit
    assert (root / "etc/mashang/gateway.env").read_text() == \
        "MASHANG_CENTRAL_KEY=key-of-gw-from-the-wheel\n"
    assert 'id = "gw-wheel"' in (root / "etc/mashang/gateway.toml").read_text()
    assert (root / "install-owners.txt").exists()
