"""Build shipctl's .deb and .rpm around a self-contained executable (PyInstaller, onedir).

    python3 packaging/build.py                # both packages into dist/
    python3 packaging/build.py --no-rpm       # the .deb only (no rpmbuild needed)
    python3 packaging/build.py --onefile      # also a one-file executable in dist/, for comparison

Needs Python >= 3.11, dpkg-deb, rpmbuild (Debian package ``rpm``) and objdump (binutils); for the
interpreter that goes into the bundle also apt-get, npm and make (``packaging/oldglibc_python.py``).
Works in ``build/`` (the interpreter's build, a build venv with PyInstaller and shipctl's dependencies, the
frozen tree, the package roots); writes only ``dist/``. Nothing outside the repo is touched.

The interpreter that goes into the bundle is a CPython 3.11 built by ``packaging/oldglibc_python.py`` from
pinned sources against glibc 2.17's symbols, so the packages install on Debian 11, RHEL 7/8/9 and Amazon
Linux 2 and 2023. Where that build cannot be had (no network to the registries,
no npm), or with ``--system-python``, the Python running this script goes in instead, and the packages then
need the build machine's glibc. Either way the floor is measured on the bundle (objdump) and written into the
packages' dependencies, so an older system refuses the package instead of failing at run time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "packaging"
BUILD = REPO / "build"
DIST = REPO / "dist"
VENV = BUILD / "pkgvenv"
PYINSTALLER = "pyinstaller==6.22.3"
# Extras that go into the bundle: prometheus (cramjam, 4 MB), otlp (protobuf, OTLP's default encoding, 3 MB),
# re2 (4 MB; guards rules against runaway backtracking) and mysql (PyMySQL, pure Python). kafka stays out
# (librdkafka, 17 MB): a config with a kafka sink gets shipctl's usual "not installed" error from check-config.
BUNDLED_EXTRAS = ("prometheus", "otlp", "re2", "mysql")
SUMMARY = "Daemonless log and metrics shipper (cron/systemd timer, SQLite state)"
DESCRIPTION = """\
shipctl tails log files, runs metric monitors and delivers both to Scalyr,
InfluxDB, Prometheus remote-write, OTLP, syslog or JSON-lines files. It has no
daemon: a systemd timer (or cron) runs one pass a minute, and everything a run
needs to resume is kept in one SQLite state file under /var/lib/shipctl.
This package carries its own Python interpreter (PyInstaller bundle in
/usr/lib/shipctl), so the system's Python version does not matter."""
MAINTAINER = "shipctl maintainers <shipctl@localhost>"
LICENSE = "Apache-2.0"

# Where the files go; zsh's directory differs between the two families.
PREFIX_LIB = "usr/lib/shipctl"
UNIT_DIR = "usr/lib/systemd/system"
DOC = "usr/share/doc/shipctl"
ZSH_DIR = {"deb": "usr/share/zsh/vendor-completions", "rpm": "usr/share/zsh/site-functions"}


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def version() -> str:
    text = (REPO / "shipctl" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        sys.exit("build.py: no __version__ in shipctl/__init__.py")
    return m.group(1)


def source_date_epoch() -> str:
    """The last commit's time, so the man page date and archive times do not change with each build."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or "0"
    except OSError:
        return "0"


def requirements() -> list[str]:
    """shipctl's runtime dependencies and the bundled extras, read from pyproject.toml, plus PyInstaller."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in BUNDLED_EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return [*reqs, PYINSTALLER]


def interpreter(system: bool) -> tuple[Path, dict[str, str]]:
    """The old-glibc CPython (see the module's docstring), or this Python when asked or when it can't be had;
    with the environment it runs in."""
    if not system:
        import oldglibc_python  # beside this file (packaging/), which is sys.path[0]

        try:
            # Its libraries are found through LD_LIBRARY_PATH (no run path; see oldglibc_python.py): for the
            # steps that run it (venv, pip, PyInstaller's dependency analysis), not for dpkg-deb & co.
            return oldglibc_python.build(), {"LD_LIBRARY_PATH": str(oldglibc_python.LIBDIR)}
        except oldglibc_python.Unavailable as exc:
            print(f"build.py: no old-glibc Python ({exc});", file=sys.stderr)
    print(f"build.py: bundling {sys.executable}: the packages need this machine's glibc", file=sys.stderr)
    return Path(sys.executable), {}


def build_venv(base: Path, base_env: dict[str, str]) -> Path:
    """A venv holding only what the bundle needs, so nothing from a dev or test install slips in. Reused
    while the requirement list and the base interpreter are unchanged."""
    reqs = requirements()
    env = {**os.environ, **base_env}
    base_version = subprocess.run([str(base), "-VV"], capture_output=True, text=True, check=True, env=env).stdout
    stamp = hashlib.sha256("\n".join([str(base), base_version, repr(MANYLINUX_CAP), *reqs]).encode()).hexdigest()
    python = VENV / "bin" / "python"
    stamp_file = VENV / ".shipctl-build"
    if not (python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp):
        shutil.rmtree(VENV, ignore_errors=True)
        run([str(base), "-m", "venv", str(VENV)], env=env)
        cap_manylinux(VENV)
        # --prefer-binary: an older release with a manylinux2014 wheel rather than compiling the newest.
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--prefer-binary"]
        run([*pip, *reqs], env=env)
        stamp_file.write_text(stamp)
    return python


# PEP 600: pip asks a module named _manylinux whether a manylinux_X_Y wheel suits this system. The build
# machine's glibc (2.36) would let pip take wheels built for glibc 2.28 (cramjam 2.14 has no other), which
# would raise the bundle's floor above the interpreter's; capped, pip takes the newest release with a
# manylinux2014 (glibc 2.17) wheel.
MANYLINUX_CAP = (2, 17)


def cap_manylinux(venv: Path) -> None:
    site = next(venv.glob("lib/python3*/site-packages"))
    major, minor = MANYLINUX_CAP
    (site / "_manylinux.py").write_text(
        f"# Written by shipctl's packaging/build.py: wheels for glibc <= {major}.{minor} only (PEP 600).\n"
        "def manylinux_compatible(tag_major, tag_minor, tag_arch):\n"
        f"    return (tag_major, tag_minor) <= ({major}, {minor})\n"
    )


def freeze(python: Path, env: dict[str, str], *, onefile: bool = False) -> Path:
    """Run PyInstaller from the source tree (PYTHONPATH), never from an installed copy of shipctl."""
    out = BUILD / ("pyi-onefile" if onefile else "pyi-dist")
    work = BUILD / ("pyi-work-onefile" if onefile else "pyi-work")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    cmd += ["--distpath", str(out), "--workpath", str(work)]
    run([*cmd, str(PKG / "shipctl.spec")], env={**env, "SHIPCTL_ONEFILE": "1" if onefile else ""})
    exe = out / "shipctl" if onefile else out / "shipctl" / "shipctl"
    got = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env)
    if got.returncode or got.stdout.strip() != f"shipctl {version()}":
        sys.exit(f"build.py: the frozen {exe} does not run: {got.stdout}{got.stderr}")
    return exe


def glibc_floor(tree: Path) -> str:
    """The newest GLIBC_x.y symbol version any ELF file of the bundle needs."""
    found: set[tuple[int, ...]] = set()
    for path in tree.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as fh:
            if fh.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True).stdout
        found |= {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out)}
    if not found:
        sys.exit("build.py: no GLIBC symbol versions found (is objdump installed?)")
    return ".".join(map(str, max(found)))


def completions(exe: Path, env: dict[str, str]) -> dict[str, str]:
    """typer's completion scripts, asked of the frozen executable itself (so they match what it answers)."""
    scripts = {}
    for shell in ("bash", "zsh", "fish"):
        got = subprocess.run(
            [str(exe)], env={**env, "_SHIPCTL_COMPLETE": f"source_{shell}"}, capture_output=True, text=True
        )
        if got.returncode or "_SHIPCTL_COMPLETE" not in got.stdout:
            sys.exit(f"build.py: no {shell} completion from {exe}: {got.stderr}")
        scripts[shell] = got.stdout
    return scripts


def unit_text(path: Path) -> str:
    """A unit from timers/, as it is, except that ExecStart runs the packaged /usr/bin/shipctl."""
    text = path.read_text()
    # Keeps systemd's prefixes ("-", "+", "!", ...) and the arguments; only the path of shipctl changes.
    return re.sub(r"^(ExecStart=[-@:+!]*)\S*?shipctl(?=\s|$)", r"\1/usr/bin/shipctl", text, flags=re.M)


def _install(src: Path | str, dst: Path, mode: int, text: str | None = None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copyfile(src, dst)
    else:
        dst.write_text(text)
    dst.chmod(mode)


def _examples(dst: Path) -> None:
    """examples/ without what running them leaves behind (state, outputs, caches)."""
    skip = shutil.ignore_patterns(".quickstart", ".state", "out.jsonl", "__pycache__", "*.pyc")
    shutil.copytree(REPO / "examples", dst, ignore=skip)
    for path in dst.rglob("*"):
        keep_x = path.is_dir() or (path.stat().st_mode & 0o100)
        path.chmod(0o755 if keep_x else 0o644)


def stage(family: str, frozen: Path, manpage: bytes, comp: dict[str, str]) -> Path:
    """The package's file tree: build/root-<family>/."""
    root = BUILD / f"root-{family}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(frozen, root / PREFIX_LIB, symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/shipctl").symlink_to("../lib/shipctl/shipctl")
    _install(PKG / "files/shipctl.toml", root / "etc/shipctl/shipctl.toml", 0o640)
    (root / "etc/shipctl/conf.d").mkdir()
    _install(PKG / "files/logrotate", root / "etc/logrotate.d/shipctl", 0o644)
    for unit in sorted((REPO / "timers").iterdir()):  # every unit there, whatever the units branch adds
        if unit.suffix in (".service", ".timer", ".socket", ".path", ".target"):
            _install(unit, root / UNIT_DIR / unit.name, 0o644, unit_text(unit))
    (root / "usr/share/man/man1").mkdir(parents=True)
    (root / "usr/share/man/man1/shipctl.1.gz").write_bytes(gzip.compress(manpage, 9, mtime=0))
    _install("", root / "usr/share/bash-completion/completions/shipctl", 0o644, comp["bash"])
    _install("", root / ZSH_DIR[family] / "_shipctl", 0o644, comp["zsh"])
    _install("", root / "usr/share/fish/vendor_completions.d/shipctl.fish", 0o644, comp["fish"])
    _install(REPO / "README.md", root / DOC / "README.md", 0o644)
    _install(PKG / "files/copyright", root / DOC / "copyright", 0o644)
    _examples(root / DOC / "examples")
    for name in ("crontab", "README.md"):
        _install(REPO / "timers" / name, root / DOC / "examples/timers" / name, 0o644)
    # Modes in the tree are what the archive records (dpkg-deb copies them; the rpm spec uses %defattr(-)).
    for path in (root / PREFIX_LIB).rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o100 else 0o644)
    for path in root.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    return root


def _size_kib(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*")) // 1024 + 1


def build_deb(root: Path, ver: str, glibc: str, epoch: str) -> Path:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    arch_name = arch.stdout.strip()
    debian = root / "DEBIAN"
    debian.mkdir()
    control = {
        "Package": "shipctl",
        "Version": f"{ver}-1",
        "Architecture": arch_name,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(_size_kib(root)),
        # useradd/groupadd (passwd) for the shipctl user; the bundle brings everything else but libc.
        # libstdc++6, libgcc-s1 (libgcc1 before Debian 11): RE2's C++ runtime is the system's (shipctl.spec).
        "Depends": f"libc6 (>= {glibc}), libstdc++6, libgcc-s1 | libgcc1, passwd",
        "Recommends": "logrotate",
        "Section": "admin",
        "Priority": "optional",
        "Homepage": "https://localhost/shipctl",
        "Description": SUMMARY + "\n" + "\n".join(f" {line}" for line in DESCRIPTION.splitlines()),
    }
    (debian / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    (debian / "conffiles").write_text("/etc/shipctl/shipctl.toml\n/etc/logrotate.d/shipctl\n")
    for script in ("postinst", "prerm", "postrm"):
        _install(PKG / "deb" / script, debian / script, 0o755)
    sums = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and not rel.startswith(("DEBIAN/", "etc/")):
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")
    (debian / "md5sums").write_text("".join(sums))
    (debian / "md5sums").chmod(0o644)
    DIST.mkdir(exist_ok=True)
    out = DIST / f"shipctl_{ver}-1_{arch_name}.deb"
    # --root-owner-group: every file root:root without fakeroot; the shipctl user's files are made by postinst.
    run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "-z6", "--build", str(root), str(out)],
        env={**os.environ, "SOURCE_DATE_EPOCH": epoch},
        stdout=subprocess.DEVNULL,
    )
    return out


def build_rpm(root: Path, ver: str, glibc: str, epoch: str) -> Path:
    arch = os.uname().machine
    top = BUILD / "rpm"
    shutil.rmtree(top, ignore_errors=True)
    for d in ("BUILD", "RPMS", "SPECS", "SOURCES", "BUILDROOT"):
        (top / d).mkdir(parents=True)
    spec = (PKG / "rpm" / "shipctl.spec.in").read_text()
    description = DESCRIPTION
    for key, value in {
        "@VERSION@": ver,
        "@SUMMARY@": SUMMARY,
        "@LICENSE@": LICENSE,
        "@GLIBC@": glibc,
        "@STAGE@": str(root),
        "@ZSH_DIR@": "/" + ZSH_DIR["rpm"],
        "@DESCRIPTION@": description,
    }.items():
        spec = spec.replace(key, value)
    spec_file = top / "SPECS" / "shipctl.spec"
    spec_file.write_text(spec)
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    run(
        [
            "rpmbuild",
            "--quiet",
            "-bb",
            "--nodeps",
            "--target",
            arch,
            "--define",
            f"_topdir {top}",
            "--define",
            "_build_id_links none",
            str(spec_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    built = next((top / "RPMS").rglob("shipctl-*.rpm"))
    DIST.mkdir(exist_ok=True)
    out = DIST / built.name
    shutil.copyfile(built, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-deb", action="store_true", help="skip the .deb")
    ap.add_argument("--no-rpm", action="store_true", help="skip the .rpm")
    ap.add_argument("--onefile", action="store_true", help="also build dist/shipctl-onefile (for comparison)")
    ap.add_argument(
        "--system-python", action="store_true", help="bundle this Python, not the old-glibc build (see above)"
    )
    args = ap.parse_args()

    ver, epoch = version(), source_date_epoch()
    base, base_env = interpreter(args.system_python)
    python = build_venv(base, base_env)
    # The source tree first on the path: the bundle and the man page come from this checkout.
    env = {
        **os.environ,
        **base_env,
        "PYTHONPATH": str(REPO),
        "SOURCE_DATE_EPOCH": epoch,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    exe = freeze(python, env)
    frozen = exe.parent
    if args.onefile:
        one = freeze(python, env, onefile=True)
        DIST.mkdir(exist_ok=True)
        shutil.copyfile(one, DIST / "shipctl-onefile")
        (DIST / "shipctl-onefile").chmod(0o755)
    glibc = glibc_floor(frozen)
    manpage = subprocess.run([str(python), str(PKG / "manpage.py")], env=env, capture_output=True, check=True).stdout
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    comp = completions(exe, clean_env)
    built = []
    if not args.no_deb:
        built.append(build_deb(stage("deb", frozen, manpage, comp), ver, glibc, epoch))
    if not args.no_rpm:
        built.append(build_rpm(stage("rpm", frozen, manpage, comp), ver, glibc, epoch))
    print(f"build.py: bundle needs glibc >= {glibc}", file=sys.stderr)
    for path in built:
        print(path.relative_to(REPO))


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:  # its own output said why; name the step that failed
        sys.exit(f"build.py: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
    except FileNotFoundError as exc:  # e.g. a tool that is not installed: dpkg-deb, rpmbuild, objdump
        sys.exit(f"build.py: {exc.filename}: {exc.strerror} (what the build needs: packaging/build.py's docstring)")
