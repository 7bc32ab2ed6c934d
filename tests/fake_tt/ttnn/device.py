"""Fake ``ttnn.device``: the dispatch-core types and the architecture checks tt-metal's helpers call."""

import enum


class DispatchCoreType(enum.Enum):
    WORKER = "WORKER"
    ETH = "ETH"


class DispatchCoreAxis(enum.Enum):
    ROW = "ROW"
    COL = "COL"


class DispatchCoreConfig:
    def __init__(self, type=None, axis=None, fabric_tensix_config=None):
        self.type = type or DispatchCoreType.WORKER
        self.axis = axis

    def __repr__(self):
        axis = self.axis.name if self.axis else "default"
        return f"DispatchCoreConfig(type={self.type.name},axis={axis})"


def is_blackhole(device=None):
    import ttnn

    return ttnn.get_arch_name() == "blackhole"


def is_wormhole_b0(device=None):
    import ttnn

    return ttnn.get_arch_name() == "wormhole_b0"
