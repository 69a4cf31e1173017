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


def test_the_newest_source_revision_that_downloads_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An index may list a security update whose files the mirror does not serve yet: the newest revision of
    the wanted series that downloads is taken; other series are never considered."""
    monkeypatch.setattr(old, "DOWNLOADS", tmp_path)
    log = tmp_path / "build.log"
    tried: list[str] = []
    listing = "".join(
        f"Package: openssl\nVersion: {v}\n\n" for v in ("3.0.20-1~deb12u2", "3.5.7-1~deb13u2", "3.5.9-1~deb13u1")
    )
    real_run = old.subprocess.run

    def run(cmd: list[str], **kw: object) -> object:
        if cmd[0] == "apt-cache":
            return old.subprocess.CompletedProcess(cmd, 0, listing, "")
        if cmd[0] == "apt-get":
            tried.append(cmd[-1])
            if cmd[-1].endswith("3.5.9-1~deb13u1"):
                (tmp_path / "openssl_3.5.9.orig.tar.gz").write_bytes(b"partial")
                return old.subprocess.CompletedProcess(cmd, 100, "", "404  Not Found")
            return old.subprocess.CompletedProcess(cmd, 0, "Download complete", "")
        return real_run(cmd, **kw)  # dpkg --compare-versions

    monkeypatch.setattr(old.subprocess, "run", run)
    old._source([], "openssl", "3.5.", log)
    assert tried == ["openssl=3.5.9-1~deb13u1", "openssl=3.5.7-1~deb13u2"]
    assert not (tmp_path / "openssl_3.5.9.orig.tar.gz").exists()  # what the failed try left is not used
    assert "openssl 3.5.9-1~deb13u1: apt-get source exited 100" in log.read_text()
    tried.clear()
    with pytest.raises(old.Unavailable, match=r"no openssl source 3\.6\.\* could be downloaded"):
        old._source([], "openssl", "3.6.", log)
    assert tried == []


def test_debians_fixes_are_applied_from_the_first_fix_on(tmp_path: Path):
    """Debian's layout patches (before DEBIAN_FIRST_FIX) stay out; every patch from it on must apply."""
    src = tmp_path / "Python-3.11.2"
    (src / "Lib").mkdir(parents=True)
    (src / "Lib" / "a.py").write_text("x = 1\n")
    debian = tmp_path / "deb" / "debian" / "patches"
    debian.mkdir(parents=True)

    def diff(old_line: str, new_line: str) -> str:
        return f"--- a/Lib/a.py\n+++ b/Lib/a.py\n@@ -1 +1 @@\n-{old_line}\n+{new_line}\n"

    (debian / "deb-layout.diff").write_text(diff("x = 1", "x = 'debian'"))
    (debian / old.DEBIAN_FIRST_FIX).write_text(diff("x = 1", "x = 2"))
    (debian / "CVE-1.patch").write_text(diff("x = 2", "x = 3"))
    (debian / "series").write_text(f"deb-layout.diff\n{old.DEBIAN_FIRST_FIX}\n# a comment\nCVE-1.patch\n")
    tarball = tmp_path / "python3.11_3.11.2-6+deb12u9.debian.tar.xz"
    with old.tarfile.open(tarball, "w:xz") as tar:
        tar.add(tmp_path / "deb" / "debian", arcname="debian")
    work = tmp_path / "work"
    work.mkdir()
    old._debian_fixes({"cpython-debian": tarball}, src, work, tmp_path / "log")
    assert (src / "Lib" / "a.py").read_text() == "x = 3\n"
    (debian / "CVE-2.patch").write_text(diff("x = 40", "x = 41"))  # does not apply: the build stops
    (debian / "series").write_text(f"{old.DEBIAN_FIRST_FIX}\nCVE-2.patch\n")
    (src / "Lib" / "a.py").write_text("x = 1\n")
    with old.tarfile.open(tarball, "w:xz") as tar:
        tar.add(tmp_path / "deb" / "debian", arcname="debian")
    with pytest.raises(old.Unavailable, match=r"Debian's CVE-2\.patch does not apply to CPython 3\.11\.2"):
        old._debian_fixes({"cpython-debian": tarball}, src, tmp_path / "work2", tmp_path / "log")


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
        "    def detect_expat_elementtree(self):",
        "        self.addext(Extension('pyexpat', sources=['pyexpat.c']))",
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
    assert "define_macros=[('Py_BUILD_CORE_MODULE', '1')]" in setup  # pyexpat.c uses an internal header


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
