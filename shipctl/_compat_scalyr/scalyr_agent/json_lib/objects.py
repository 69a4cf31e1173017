"""``scalyr_agent.json_lib.objects``."""

from shipctl.scalyrapi.config import ArrayOfStrings, JsonArray, JsonObject, SpaceAndCommaSeparatedArrayOfStrings

__all__ = ["ArrayOfStrings", "JsonArray", "JsonObject", "SpaceAndCommaSeparatedArrayOfStrings"]
