"""``shipctl preview``: what a log's rules would send for a file, without touching the state file."""

from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass, field
from typing import Any

from shipctl.config import Config, LogConfig
from shipctl.errors import UsageError
from shipctl.model import FMT_RAW
from shipctl.tail.files import Source
from shipctl.tail.pipeline import Pipeline, read_size


@dataclass
class PreviewResult:
    log_id: str
    path: str
    events: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    lines_dropped: int = 0
    redactions: int = 0


def find_log(config: Config, path: str, log_id: str | None) -> LogConfig:
    if log_id:
        return config.log(log_id)
    for lg in config.logs:
        if fnmatch.fnmatch(path, lg.path) or path in glob.glob(lg.path, recursive=True):
            return lg
    raise UsageError(f"{path}: no [[logs]] entry in {config.file} matches this file; name one with --log ID")


def preview(config: Config, path: str, log_id: str | None = None, *, limit: int = 0) -> PreviewResult:
    log_cfg = find_log(config, path, log_id)
    pipe = Pipeline(log_cfg)
    rsize = read_size(log_cfg, 1 << 20)
    out = PreviewResult(log_cfg.id, path)
    try:
        src = Source(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with src:
        offset = 0
        while True:
            chunk = src.read_at(offset, rsize)
            if not chunk:
                break
            cut = pipe.cut(chunk, at_eof=len(chunk) < rsize, flush=True)
            offset += cut.consumed
            out.lines += cut.lines
            out.lines_dropped += cut.lines_dropped
            out.redactions += cut.redactions
            if cut.fmt == FMT_RAW:
                msgs = cut.payload.decode("utf-8", "replace").split("\n")[:-1]
                out.events.extend({"message": m, "attrs": dict(log_cfg.attributes)} for m in msgs)
            elif cut.payload:
                import json

                for e in json.loads(cut.payload):
                    out.events.append({"message": e["m"], "attrs": {**log_cfg.attributes, **(e.get("a") or {})}})
            if limit and len(out.events) >= limit:
                del out.events[limit:]
                break
            if cut.consumed == 0:
                break
    return out
