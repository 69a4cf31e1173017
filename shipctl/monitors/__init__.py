"""Metric and event sources: built-in monitors, scripts, plugins."""
