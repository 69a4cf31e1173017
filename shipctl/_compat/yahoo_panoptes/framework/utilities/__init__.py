"""Panoptes utilities used by plugins: the key/value and secrets stores."""
