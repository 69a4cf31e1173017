"""Panoptes framework names used by polling plugins."""
