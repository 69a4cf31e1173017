"""Panoptes resources: shipctl's Resource keeps Panoptes' constructor, attributes and JSON."""

from __future__ import annotations

from collections.abc import Iterator

from yahoo_panoptes.framework.exceptions import PanoptesBaseException

from shipctl.pyplugins.resources import Resource as PanoptesResource


class PanoptesResourceError(PanoptesBaseException):
    pass


class PanoptesResourceSet:
    """An unordered set of resources."""

    def __init__(self) -> None:
        self._resources: set[PanoptesResource] = set()

    def add(self, resource: PanoptesResource) -> None:
        if not isinstance(resource, PanoptesResource):
            raise AssertionError("resource must an instance of PanoptesResource")
        self._resources.add(resource)

    def remove(self, resource: PanoptesResource) -> None:
        self._resources.remove(resource)

    @property
    def resources(self) -> set[PanoptesResource]:
        return self._resources

    def __iter__(self) -> Iterator[PanoptesResource]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)


__all__ = ["PanoptesResource", "PanoptesResourceError", "PanoptesResourceSet"]
