"""Panoptes plugin base classes and context."""
