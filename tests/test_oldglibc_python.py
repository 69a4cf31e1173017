"""packaging/oldglibc_python.py (the bundle's interpreter) and how packaging/build.py picks it, without building it:
the build itself (~5 min) runs in packaging/roundtrip.sh, which checks the packages' glibc floor."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    """A script of packaging/ as a module, under a name no installed package can shadow."""
    spec = importlib.util.spec_from_file_location(f"shipctl_glibc_{name}", REPO / "packaging" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


old = _load("oldglibc_python")
build = _load("build")


def test_a_download_with_another_checksum_is_refused(tmp_path: Path):
    good = tmp_path / "python3.11_3.11.2.orig.tar.gz"
    good.write_bytes(b"pinned bytes")
    assert old._checked(good, hashlib.sha256(b"pinned bytes").hexdigest()) == good
    good.write_bytes(b"pinned bytes, tampered")
    with pytest.raises(old.Unavailable, match=r"python3\.11_3\.11\.2\.orig\.tar\.gz: sha256 [0-9a-f]{64}, expected"):
        old._checked(good, hashlib.sha256(b"pinned bytes").hexdigest())


def test_every_pin_has_a_sha256_and_debian_file_names_encode_the_epoch():
    for sha in [old.ZIG[1], old.CPYTHON[2], old.SQLITE[1], *old.BULLSEYE_DEBS.values()]:
        assert len(sha) == 64 and int(sha, 16) >= 0
    assert all("=" in pin for pin in old.BULLSEYE_DEBS)  # an exact version, never "whatever is current"
    assert old._deb_name("zlib1g=1:1.2.11.dfsg-2+deb11u2") == "zlib1g_1%3a1.2.11.dfsg-2+deb11u2_amd64.deb"
    assert old._deb_name("libffi7=3.3-6") == "libffi7_3.3-6_amd64.deb"
    assert old.TARGET == "x86_64-linux-gnu.2.17"


def _cpython_tree(root: Path, *, multiarch: bool = True) -> Path:
    """The three build files _patch edits, with the lines of CPython 3.11.2 it changes."""
    (root / "Makefile").write_text(
        "\t\t$(BLDSHARED) -Wl,-h$(INSTSONAME) -o $(INSTSONAME) $(LIBRARY_OBJS)\n"
        "\t$(BLDSHARED) $(NO_AS_NEEDED) -o $@ -Wl,-h$@ $^\n"
    )
    (root / "pyconfig.h").write_text("#define HAVE_MEMFD_CREATE 1\n#define HAVE_PIPE2 1\n")
    lines = [
        "    def configure_compiler(self):",
        "        if not CROSS_COMPILING:",
        "            add_dir_to_list(self.compiler.library_dirs, '/usr/local/lib')",
        "            add_dir_to_list(self.compiler.include_dirs, '/usr/local/include')",
        "        self.add_multiarch_paths()" if multiarch else "        pass",
        "        self.add_ldflags_cppflags()",
    ]
    (root / "setup.py").write_text("\n".join(lines) + "\n")
    return root


def test_patch_makes_the_build_files_fit_zig_and_glibc_2_17(tmp_path: Path):
    src = _cpython_tree(tmp_path)
    old._patch(src)
    makefile = (src / "Makefile").read_text()
    assert "-Wl,-h" not in makefile  # zig's linker knows only -soname
    assert "-Wl,-soname,$(INSTSONAME)" in makefile and "-Wl,-soname,$@" in makefile
    pyconfig = (src / "pyconfig.h").read_text()
    assert "#define HAVE_MEMFD_CREATE" not in pyconfig and "#define HAVE_PIPE2 1" in pyconfig
    setup = (src / "setup.py").read_text()
    assert "add_multiarch_paths" not in setup and "/usr/local/include" not in setup
    assert "self.add_ldflags_cppflags()" in setup  # CPPFLAGS/LDFLAGS (the prefix's libraries) still apply


def test_patch_refuses_a_setup_py_it_does_not_know(tmp_path: Path):
    src = _cpython_tree(tmp_path, multiarch=False)
    with pytest.raises(old.Unavailable, match="add_multiarch_paths"):
        old._patch(src)


def test_a_finished_build_is_reused_and_a_changed_pin_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "oldglibc-python"
    python = root / "prefix" / "bin" / "python3.11"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    monkeypatch.setattr(old, "ROOT", root)
    monkeypatch.setattr(old, "PREFIX", root / "prefix")
    monkeypatch.setattr(old, "PYTHON", python)
    (root / "stamp").write_text(old._stamp())
    assert old.build() == python  # nothing fetched or built: no tool is even looked for
    monkeypatch.setattr(old, "BUILD_REVISION", old.BUILD_REVISION + 1)
    monkeypatch.setattr(old.shutil, "which", lambda tool: None if tool == "npm" else "/usr/bin/" + tool)
    with pytest.raises(old.Unavailable, match="npm is not installed"):
        old.build()


def test_build_py_falls_back_to_its_own_python_and_says_so(monkeypatch: pytest.MonkeyPatch, capsys):
    def unavailable() -> Path:
        raise old.Unavailable("npm is not installed")

    monkeypatch.setitem(sys.modules, "oldglibc_python", old)
    monkeypatch.setattr(old, "build", unavailable)
    assert build.interpreter(False) == (Path(sys.executable), {})
    err = capsys.readouterr().err
    assert "no old-glibc Python (npm is not installed)" in err
    assert f"bundling {sys.executable}: the packages need this machine's glibc" in err
    monkeypatch.setattr(old, "build", lambda: Path("/opt/py/bin/python3.11"))
    # The steps that run it load the prefix's libraries (it has no run path).
    python, env = build.interpreter(False)
    assert (python, env) == (Path("/opt/py/bin/python3.11"), {"LD_LIBRARY_PATH": str(old.LIBDIR)})
    assert capsys.readouterr().err == ""
    assert build.interpreter(True) == (Path(sys.executable), {})  # --system-python
