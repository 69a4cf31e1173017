"""Shared plumbing of the commands: load config, open state under the command's lock, bound a run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shipctl import fastcli
from shipctl.config import Config, load_config
from shipctl.errors import StateError
from shipctl.runtime import Context, log
from shipctl.state import State, lock, resolve_state_path
from shipctl.state.db import StateDamaged, damage, forget_damage


def setup_logging(state_path: Path, log_file: str | None) -> Callable[[], str | None]:
    """The tool's own log: a small rotating file beside the state file (shipctl/logfile.py), set up when the
    logger is first used, so a run that logs nothing never imports ``logging`` (issue 13). Returns what the
    session asks after the run: why the file could not be written, or None."""
    from shipctl.state import db

    path = db.own_log_path(state_path, log_file)
    handlers: list[Any] = []

    def install(logger: Any) -> None:
        from shipctl.logfile import attach

        handlers.append(attach(logger, path))

    log.configure(install)
    return lambda: next((h.failure for h in handlers if h is not None and h.failure), None)


@contextlib.contextmanager
def session(
    config_path: str | None, kind: str | None, *, wait: bool = False, config: Config | None = None
) -> Iterator[Context]:
    """Load config, take the lock for ``kind`` (None: no lock), open the state file. After the work: give space
    back to the file system (State.maintain). A damaged state file met by any thread of the command (some
    catch errors to go on with other sinks or monitors) outranks every other outcome: exit 73 with its one
    line. A log file that could not be written makes an otherwise successful command exit 73 too."""
    cfg = config or load_config(config_path)
    state_path = resolve_state_path(cfg.agent.state)
    lock_cm = lock(state_path, kind, wait=wait) if kind else contextlib.nullcontext()
    forget_damage(state_path)
    with lock_cm:
        state = State.open(state_path)
        fastcli.end_startup()
        log_failure = setup_logging(state_path, cfg.agent.log_file)
        try:
            yield Context(cfg, state)
            state.maintain()
        except StateError:
            raise
        except BaseException:
            found = damage(state_path)
            if found:
                raise StateDamaged(found) from None
            raise
        finally:
            state.close()
        found = damage(state_path)
        if found:
            raise StateDamaged(found)
        failure = log_failure()
        if failure:
            raise StateError(f"{failure} (the run itself went through)")
