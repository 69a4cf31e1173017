"""``scalyr_agent.json_lib.exceptions``."""

from shipctl.scalyrapi.config import JsonConversionException, JsonParseException

__all__ = ["JsonConversionException", "JsonParseException"]
