"""Command functions: orchestrate sources, state and sinks; return result objects; never print."""
