"""``scalyr_agent.compat``: the agent's Python 2/3 helpers, which monitors adapted from its built-in ones use. On
Python 3 each is the standard library's own."""

import collections
import os
import shutil
import struct
import subprocess
from typing import Any

PY2 = False
PY26 = False
PY27 = False
PY3 = True
PY_post_equal_279 = True

os_environ_unicode = os.environ
custom_any = any
custom_all = all
subprocess_check_output = subprocess.check_output


def os_getenv_unicode(name: str, default: Any = None) -> Any:
    return os.environ.get(name, default)


def custom_defaultdict(default_type: Any) -> Any:
    return collections.defaultdict(default_type)


def struct_pack_unicode(fmt: str, *args: Any) -> bytes:
    return struct.pack(fmt, *args)


def struct_unpack_unicode(fmt: str, buffer: bytes) -> tuple[Any, ...]:
    return struct.unpack(fmt, buffer)


def which(executable: str) -> str | None:
    return shutil.which(executable)


find_executable = which
