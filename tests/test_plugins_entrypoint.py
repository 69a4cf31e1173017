"""A polling plugin added by a pip-installed package through the ``shipctl.plugins`` entry-point group.

The package is built in tmp_path and installed into the running interpreter's environment with pip (local
path, no network, no build isolation), then uninstalled. It carries its own few-line PEP 517 backend: the venv's
setuptools (65) cannot build a wheel without the ``wheel`` package, which is not installed and cannot be
fetched here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import Env
from tests.plugin_helpers import configure, metric_events, upload

DIST = "shipctl_test_uptime_plugin"

BACKEND = '''
"""Build a wheel with zipfile: enough for pip to install this package (no setuptools, no wheel)."""
import base64, hashlib, os, zipfile

NAME, VERSION = "shipctl_test_uptime_plugin", "1.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"


def _files():
    files = {}
    for root, _, names in os.walk("uptime_plugin"):
        for n in names:
            if n.endswith(".py"):
                path = os.path.join(root, n)
                files[path.replace(os.sep, "/")] = open(path, "rb").read()
    files[f"{DIST_INFO}/METADATA"] = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
    files[f"{DIST_INFO}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{DIST_INFO}/entry_points.txt"] = b"[shipctl.plugins]\\nuptime = uptime_plugin:register\\n"
    return files


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in _files().items():
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        zf.writestr(f"{DIST_INFO}/RECORD", "\\n".join(record + [f"{DIST_INFO}/RECORD,,"]) + "\\n")
    return name
'''

PACKAGE = '''
"""An installed package adding a polling plugin to shipctl."""


def register(registry):
    registry.python_plugin("uptime", "uptime_plugin.plugin:Uptime")
'''

PLUGIN = """
from shipctl.pyplugins import MetricsGroup


class Uptime:
    def run(self, context):
        seconds = float(open("/proc/uptime").read().split()[0])
        return [MetricsGroup("uptime", dimensions={"source": "entry_point"}).gauge("seconds", seconds)]
"""


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    src = tmp_path_factory.mktemp("pkg")
    (src / "uptime_plugin").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (src / "backend.py").write_text(textwrap.dedent(BACKEND))
    (src / "uptime_plugin" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (src / "uptime_plugin" / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    r = _pip("install", "--no-build-isolation", "--no-deps", "--no-index", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield
    finally:
        r = _pip("uninstall", "--yes", DIST)
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_pip_installed_package_adds_a_plugin(env: Env, installed_plugin: None) -> None:
    configure(env, '[[monitors]]\ntype = "plugin"\nid = "up"\nplugin = "uptime"\n')
    r = env.proc("run-monitor", "up")  # a fresh interpreter finds the package's entry point
    assert r.returncode == 0, r.stderr
    upload(env)
    (e,) = metric_events(env, "up")
    assert e["attrs"]["metric"] == "seconds" and e["attrs"]["value"] > 0
    assert e["attrs"]["source"] == "entry_point" and e["attrs"]["group_type"] == "uptime"


def test_an_unknown_plugin_name_lists_the_installed_ones(env: Env, installed_plugin: None) -> None:
    configure(env, '[[monitors]]\ntype = "plugin"\nid = "up"\nplugin = "uptim"\n')
    r = env.proc("check-config")
    assert r.returncode == 78
    assert (
        "monitors[0].plugin: no plugin 'uptim' in plugin_dirs" in r.stderr
        and "nor installed (installed: uptime)" in r.stderr
    )
