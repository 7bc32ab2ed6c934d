"""A fake of the ttnn calls framereel's Tenstorrent backend makes, computed with torch on the host.

Every call that matters is appended to the file named by FAKE_TTNN_LOG, so tests can check the
control flow (device opened and closed, trace compiled once, executed per frame).
"""

import os

import torch

bfloat16 = "bfloat16"
TILE_LAYOUT = "TILE"
DRAM_MEMORY_CONFIG = "DRAM"
_traces = {}


def _log(*words):
    path = os.environ.get("FAKE_TTNN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")


class Device:
    def __init__(self, device_id):
        self.id = device_id


class Tensor:
    def __init__(self, data, device=None):
        self.data = data
        self.device = device

    @property
    def shape(self):
        return self.data.shape

    def cpu(self, blocking=True):
        return Tensor(self.data.clone())


def open_device(device_id=0, l1_small_size=None, trace_region_size=None):
    if os.environ.get("FAKE_TTNN_BAD_STATE"):
        raise RuntimeError("TT_THROW: Timeout waiting for Ethernet core service remote IO request")
    chips = int(os.environ.get("FAKE_TTNN_CHIPS", "1"))
    if device_id >= chips:
        raise RuntimeError(f"Device {device_id} is not available: 0 devices found with that id")
    _log("open", device_id, l1_small_size, trace_region_size)
    return Device(device_id)


def close_device(device):
    _log("close", device.id)


def from_torch(t, dtype=None, layout=None, device=None):
    return Tensor(t.to(torch.bfloat16).to(torch.float32), device)


def to_torch(t):
    return t.data


def concat(tensors, dim=0):
    return Tensor(torch.cat([t.data for t in tensors], dim=dim))


def copy_host_to_device_tensor(host, device_tensor, cq_id=0):
    device_tensor.data = host.data.clone()


def allocate_tensor_on_device(shape, dtype, layout, device, memory_config=None):
    return Tensor(torch.zeros(tuple(shape)), device)


def Shape(dims):
    return tuple(dims)


def begin_trace_capture(device, cq_id=0):
    tid = len(_traces) + 1
    _log("capture", device.id, tid)
    return tid


def end_trace_capture(device, tid, cq_id=0):
    pass


def register_trace(tid, fn):
    _traces[tid] = fn


def execute_trace(device, tid, cq_id=0, blocking=True):
    _log("execute", device.id, tid)
    _traces[tid]()


def release_trace(device, tid):
    _log("release", device.id, tid)
    _traces.pop(tid, None)


def synchronize_device(device):
    pass
