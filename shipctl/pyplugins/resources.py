"""Resources a plugin polls: the Panoptes resource model, loaded from JSON lists (seed 003's ``localhost.json``)
or from tables in the config.

``Resource`` keeps Panoptes' constructor, attribute names and JSON shape, so it is also what
``yahoo_panoptes.framework.resources.PanoptesResource`` is in the compatibility package.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FIELDS = (
    "resource_site",
    "resource_class",
    "resource_subclass",
    "resource_type",
    "resource_id",
    "resource_endpoint",
)
OPTIONAL = ("resource_plugin", "resource_creation_timestamp", "resource_metadata")
DEFAULT_TTL = 604800  # Panoptes' resource cache TTL; it shows as metadata _resource_ttl
KEY = re.compile(r"^[^\d\W]\w*\Z")  # Panoptes' rule for metadata keys (and metric and dimension names)


class ResourceError(ValueError):
    """A resource file or table is malformed; the message names the file and the entry."""


class Resource:
    """A device or endpoint to poll: site/class/subclass/type/id/endpoint, the discovery plugin, string metadata."""

    def __init__(
        self,
        resource_site: str,
        resource_class: str,
        resource_subclass: str,
        resource_type: str,
        resource_id: str,
        resource_endpoint: str,
        resource_creation_timestamp: float | str | None = None,
        resource_plugin: str | None = None,
        resource_ttl: int = DEFAULT_TTL,
    ) -> None:
        values = (resource_site, resource_class, resource_subclass, resource_type, resource_id, resource_endpoint)
        for name, value in zip(FIELDS, values, strict=True):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if resource_plugin is not None and not isinstance(resource_plugin, str):
            raise ValueError(f"resource_plugin must be a string or None, got {resource_plugin!r}")
        if not isinstance(resource_ttl, int) or isinstance(resource_ttl, bool) or resource_ttl <= 0:
            raise ValueError(f"resource_ttl must be an integer greater than 0, got {resource_ttl!r}")
        self._data: dict[str, Any] = dict(zip(FIELDS, values, strict=True))
        self._data["resource_metadata"] = {"_resource_ttl": str(resource_ttl)}
        self._data["resource_creation_timestamp"] = _timestamp(resource_creation_timestamp)
        self._data["resource_plugin"] = resource_plugin

    def add_metadata(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not KEY.match(key):
            raise ValueError(f'metadata key {key!r} has to match pattern: (letter|"_") (letter | digit | "_")*')
        if not isinstance(value, str) or not value:
            raise ValueError(f"metadata {key!r}: value must be a non-empty string, got {value!r}")
        if "|" in value:
            raise ValueError(f"metadata {key!r}: value {value!r} cannot contain |")
        self._data["resource_metadata"][key] = value

    resource_site = property(lambda self: self._data["resource_site"])
    resource_class = property(lambda self: self._data["resource_class"])
    resource_subclass = property(lambda self: self._data["resource_subclass"])
    resource_type = property(lambda self: self._data["resource_type"])
    resource_id = property(lambda self: self._data["resource_id"])
    resource_endpoint = property(lambda self: self._data["resource_endpoint"])
    resource_metadata = property(lambda self: self._data["resource_metadata"])
    resource_creation_timestamp = property(lambda self: self._data["resource_creation_timestamp"])
    resource_plugin = property(lambda self: self._data["resource_plugin"])
    resource_ttl = property(lambda self: self._data["resource_metadata"]["_resource_ttl"])

    @property
    def raw(self) -> dict[str, Any]:
        return self._data

    @property
    def json(self) -> str:
        return json.dumps(self._data)

    @property
    def serialization_key(self) -> str:
        """Panoptes' key of a resource; shipctl keys locks and rate history by it."""
        parts = ["plugin", self.resource_plugin or ""]
        for name in ("site", "class", "subclass", "type", "id", "endpoint"):
            parts += [name, self._data[f"resource_{name}"]]
        return "|".join(parts)

    def attrs(self) -> dict[str, str]:
        """The six fields, as event attributes."""
        return {f: self._data[f] for f in FIELDS}

    def field(self, name: str) -> str | None:
        """A field, or ``resource_metadata.<key>``, for the resource filter; None when the metadata key is absent."""
        if name.startswith("resource_metadata."):
            return self._data["resource_metadata"].get(name.split(".", 1)[1])
        return self._data[name]

    def __repr__(self) -> str:
        return self.serialization_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return all(self._data[f] == other._data[f] for f in FIELDS[:5])

    def __hash__(self) -> int:
        return hash(tuple(self._data[f] for f in FIELDS[:5]))

    @staticmethod
    def resource_from_dict(resource_dict: Mapping[str, Any]) -> Resource:
        """Panoptes' constructor from the JSON shape."""
        return from_dict(resource_dict, "resource")


def _timestamp(value: float | str | None) -> float:
    # JSON discovery files carry it as a string ("1512629517.03121"); Panoptes reads it back as a float.
    if value is None or value == "" or value == 0:
        return time.time()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"resource_creation_timestamp must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"resource_creation_timestamp must be a number, got {value!r}") from None


def from_dict(d: Any, where: str) -> Resource:
    """A resource from its JSON shape; errors say ``where`` and which key."""
    if not isinstance(d, Mapping):
        raise ResourceError(f"{where}: expected an object with {', '.join(FIELDS)}, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS) - set(OPTIONAL))
    if unknown:
        raise ResourceError(f"{where}: {unknown[0]}: unknown key (expected {', '.join(FIELDS + OPTIONAL)})")
    for f in FIELDS:
        if not isinstance(d.get(f), str) or not d[f]:
            got = "missing" if f not in d else f"got {d[f]!r}"
            raise ResourceError(f"{where}: {f}: expected a non-empty string, {got}")
    metadata = d.get("resource_metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ResourceError(f"{where}: resource_metadata: expected an object of strings, got {metadata!r}")
    ttl_text = metadata.get("_resource_ttl", str(DEFAULT_TTL))
    try:
        ttl = int(ttl_text)
        if ttl <= 0 or isinstance(ttl_text, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ResourceError(
            f"{where}: resource_metadata._resource_ttl: expected a whole number of seconds, got {ttl_text!r}"
        ) from None
    try:
        res = Resource(
            *(d[f] for f in FIELDS),
            resource_creation_timestamp=d.get("resource_creation_timestamp"),
            resource_plugin=d.get("resource_plugin"),
            resource_ttl=ttl,
        )
        for key, value in metadata.items():
            res.add_metadata(key, value)
    except ValueError as exc:
        raise ResourceError(f"{where}: {exc}") from None
    return res


def load(sources: Iterable[str | Mapping[str, Any]], *, config_file: str = "") -> list[Resource]:
    """Resources from JSON list files (paths) and config tables, in order; a resource listed twice (same
    serialization key) is kept once."""
    out: dict[str, Resource] = {}
    for i, src in enumerate(sources):
        if isinstance(src, str):
            for res in _from_file(Path(src)):
                out.setdefault(res.serialization_key, res)
        else:
            res = from_dict(src, f"{config_file}: resources[{i}]")
            out.setdefault(res.serialization_key, res)
    return list(out.values())


def _from_file(path: Path) -> list[Resource]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResourceError(f"{path}: cannot read resources: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResourceError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ResourceError(f"{path}: expected a JSON list of resources, got {type(data).__name__}")
    return [from_dict(d, f"{path}: [{i}]") for i, d in enumerate(data)]


def this_host() -> Resource:
    """The resource of a plugin configured without ``resources``: the machine shipctl runs on."""
    return Resource("local", "system", "host", "generic", socket.gethostname(), "localhost", None, "shipctl")
