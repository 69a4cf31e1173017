"""``scalyr_agent.util``: the pieces of the agent's utilities monitors use."""

import json
from typing import Any

from shipctl.scalyrapi.monitor import RunState, StoppableThread


def json_encode(obj: Any, output: Any = None, binary: bool = False) -> Any:
    """Compact JSON text (bytes with ``binary``); written to ``output`` when given."""
    text = json.dumps(obj, separators=(",", ":"))
    if output is not None:
        output.write(text)
        return None
    return text.encode() if binary else text


def json_decode(text: Any) -> Any:
    return json.loads(text)


__all__ = ["RunState", "StoppableThread", "json_decode", "json_encode"]
