"""``scalyr_agent.util``: the pieces of the agent's utilities monitors use."""

import datetime
import glob
import json
import os
from typing import Any

from shipctl.scalyrapi.monitor import RunState, StoppableThread

_EPOCH = datetime.datetime(1970, 1, 1)


def json_encode(obj: Any, output: Any = None, binary: bool = False) -> Any:
    """Compact JSON text (bytes with ``binary``); written to ``output`` when given."""
    text = json.dumps(obj, separators=(",", ":"))
    if output is not None:
        output.write(text)
        return None
    return text.encode() if binary else text


def json_decode(text: Any) -> Any:
    return json.loads(text)


def read_file_as_json(file_path: str, strict_utf8: bool = False) -> Any:
    """The whole file parsed as standard JSON."""
    with open(file_path, encoding="utf-8", errors="strict" if strict_utf8 else "replace") as fh:
        return json.loads(fh.read())


def atomic_write_dict_as_json_file(file_path: str, tmp_path: str, info: Any) -> None:
    """Write ``info`` as JSON to ``tmp_path``, then rename it over ``file_path``: readers see the old file or
    the new one, never half of it."""
    with open(tmp_path, "w") as fh:
        fh.write(json_encode(info))
    os.replace(tmp_path, file_path)


def is_list_of_strings(vals: Any) -> bool:
    try:
        return all(isinstance(v, str) for v in vals)
    except TypeError:
        return False


def match_glob(pathname: str) -> list[str]:
    """Paths matching a glob; ``**`` crosses directories."""
    return glob.glob(pathname, recursive=True)


def microseconds_since_epoch(date_time: datetime.datetime, epoch: datetime.datetime | None = None) -> float:
    delta = date_time - (epoch or _EPOCH)
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


def seconds_since_epoch(date_time: datetime.datetime, epoch: datetime.datetime | None = None) -> float:
    """Seconds from ``epoch`` (1970-01-01, naive UTC) to the naive UTC ``date_time``."""
    return microseconds_since_epoch(date_time, epoch) / 10.0**6


__all__ = [
    "RunState",
    "StoppableThread",
    "atomic_write_dict_as_json_file",
    "is_list_of_strings",
    "json_decode",
    "json_encode",
    "match_glob",
    "microseconds_since_epoch",
    "read_file_as_json",
    "seconds_since_epoch",
]
