# Fake of models/utility_functions.py (older trees): the architecture checks and the profiler the SD demo uses.

import time


def is_blackhole():
    import ttnn

    return ttnn.get_arch_name() == "blackhole"


def is_wormhole_b0():
    import ttnn

    return ttnn.get_arch_name() == "wormhole_b0"


class _Profiler:
    def __init__(self):
        self.times = {}
        self.starts = {}

    def clear(self):
        self.times.clear()

    def start(self, key):
        self.starts[key] = time.perf_counter()

    def end(self, key):
        self.times[key] = time.perf_counter() - self.starts.pop(key)

    def get(self, key):
        return self.times.get(key, 0.0)

    def print(self):
        for key, value in self.times.items():
            print(f"{key}: {value:.3f}s")


profiler = _Profiler()


def enable_persistent_kernel_cache():
    pass
