"""A long-running monitor (it listens and reports as data arrives): it overrides run(), not gather_sample()."""

from scalyr_agent import ScalyrMonitor


class ListeningMonitor(ScalyrMonitor):
    def run(self):
        while not self._is_thread_stopped():
            self._sleep_but_awaken_if_stopped(1)
