"""The SQLite state file: the only place that speaks SQL."""

from shipctl.state.db import State, default_state_path, lock, resolve_state_path

__all__ = ["State", "default_state_path", "lock", "resolve_state_path"]
