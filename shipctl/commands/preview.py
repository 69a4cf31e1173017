"""``shipctl preview``: what a log's rules would send for a file, without touching the state file.

The file is read from its start through the same pipeline as tail-once; a partial last line or an open
group is shown as it would be sent once its wait is over. Nothing is opened but the config and the file.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any

from shipctl.config import Config, LogConfig
from shipctl.errors import ConfigError, UsageError
from shipctl.model import Batch
from shipctl.records import record
from shipctl.tail.discover import first_match
from shipctl.tail.files import Source
from shipctl.tail.pipeline import Pipeline, read_size


@record
class PreviewResult:
    log_id: str
    path: str
    # Why these rules: "--log" when named, else the first [[logs]] entry whose path pattern claims the file.
    log_path: str = ""
    chosen_by: str = "path"
    events: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    lines_dropped: int = 0
    redactions: int = 0
    # Bytes not shown: the rest of a line after a redaction match longer than a whole read (as tail-once drops them).
    bytes_dropped: int = 0


def find_log(config: Config, path: str, log_id: str | None) -> LogConfig:
    if log_id:
        try:
            return config.log(log_id)
        except ConfigError as exc:  # a wrong --log is a usage mistake, not a broken config
            raise UsageError(exc.message) from None
    # The matcher tail-once's walk uses (``*`` stays within a directory), so the rules shown are the
    # ones tail-once applies to this file.
    if not os.path.exists(path):
        raise UsageError(f"{path}: cannot open: No such file or directory")
    found = first_match(config.logs, os.path.abspath(path))
    if found is not None:
        return found
    raise UsageError(f"{path}: no [[logs]] entry in {config.file} matches this file; name one with --log ID")


def preview(config: Config, path: str, log_id: str | None = None, *, limit: int = 0) -> PreviewResult:
    log_cfg = find_log(config, path, log_id)
    pipe = Pipeline(log_cfg)
    rsize = read_size(log_cfg, config.agent.batch_bytes)
    attrs = {**config.server_attributes, **log_cfg.attributes}
    out = PreviewResult(log_cfg.id, path, log_path=log_cfg.path, chosen_by="--log" if log_id else "path")
    try:
        src = Source(path)  # a FIFO, socket or device is refused, never read (a read could wait forever)
    except OSError as exc:
        raise UsageError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with src:
        offset = 0
        while not limit or len(out.events) < limit:
            try:
                chunk = src.read_at(offset, rsize)
                cut = pipe.cut(chunk, at_eof=len(chunk) < rsize, flush=True)
                if cut.open_match and len(chunk) == rsize:  # a redaction match longer than a read, as tail-once
                    end = src.line_end(offset + len(chunk), rsize)
                    assert end is not None  # (only a go_on that says no gives None)
                    cut = pipe.cut_through(chunk, end[0] - offset - len(chunk), newline=end[1])
                    out.bytes_dropped += cut.bytes_dropped
            except OSError as exc:  # a device that refuses reads
                raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
            if not cut.consumed:
                break
            offset += cut.consumed
            out.lines += cut.lines
            out.lines_dropped += cut.lines_dropped
            out.redactions += cut.redactions
            # Decoded exactly as upload decodes a queued batch.
            batch = Batch(
                id=0, kind="log", source=path, log_id=log_cfg.id, ts=0, attrs=attrs, fmt=cut.fmt,
                n_events=cut.n_events, n_bytes=len(cut.payload), sn=0, payload=cut.payload,
            )  # fmt: skip
            out.events += ({"message": e.message, "attrs": e.attrs} for e in batch.events())
    if limit:
        del out.events[limit:]
    return out
