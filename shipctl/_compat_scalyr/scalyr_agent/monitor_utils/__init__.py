"""``scalyr_agent.monitor_utils``: importable, so ``from scalyr_agent import monitor_utils`` works. The agent's
server helpers here (ServerProcessor, annotation parsing, k8s) serve long-running monitors, which shipctl does
not run."""
