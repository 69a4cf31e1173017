"""Panoptes polling plugins."""
