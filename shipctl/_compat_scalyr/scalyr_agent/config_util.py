"""``scalyr_agent.config_util``: the agent's config value conversions (shipctl/scalyrapi/config.py)."""

from shipctl.scalyrapi.config import (
    BadConfiguration,
    convert_config_param,
    get_config_from_env,
    parse_array_of_strings,
)

__all__ = ["BadConfiguration", "convert_config_param", "get_config_from_env", "parse_array_of_strings"]
