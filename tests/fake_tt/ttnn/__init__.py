"""A fake of the ttnn calls tt-metal's SD 1.4 demo and framereel make, computed with torch on the host.

It copies ttnn's names and keyword arguments (``open_device(device_id=, l1_small_size=,
trace_region_size=, dispatch_core_config=)``, ``CreateDevice``, ``GetNumPCIeDevices``,
``DispatchCoreConfig``, trace capture) and these quirks of the real runtime:

* the chips are those of ``FAKE_TT_BOARDS`` (as tt-smi lists them: ``n300 L,n300 R``), narrowed by
  ``TT_VISIBLE_DEVICES`` or ``TT_METAL_VISIBLE_DEVICES`` (PCIe ids, renumbered from 0 with their remote
  chips after them); a remote chip opens (the non-MMIO refusal lives in older root conftests, see
  ``tt_metal_old/conftest.py``, not in ttnn);
* trace capture fails, with tt-metal's message, when the captured commands need more than the
  device's ``trace_region_size`` (each UNet step and the VAE decode add a fixed size);
* one visible chip of a P300 board opens only with ``TT_MESH_GRAPH_DESC_PATH`` naming a descriptor file
  (tt-metal's CUSTOM cluster type otherwise asserts; see :func:`_check_cluster`);
* ``FAKE_TTNN_BAD_STATE`` makes opening fail the way a chip left in a bad state does.

Every call that matters is appended to the file named by ``FAKE_TTNN_LOG``.
"""

import os

from .device import DispatchCoreAxis, DispatchCoreConfig, DispatchCoreType  # noqa: F401  (also binds ttnn.device)
from .mesh import (  # noqa: F401
    FabricConfig,
    MeshDevice,
    MeshShape,
    ReplicateTensorToMesh,
    ShardTensor2dMesh,
    ShardTensorToMesh,
    Topology,
    close_mesh_device,
    get_num_devices,
    get_pcie_device_ids,
    open_mesh_device,
    set_fabric_config,
)

bfloat16 = "bfloat16"
TILE_LAYOUT = "TILE"
ROW_MAJOR_LAYOUT = "ROW_MAJOR"
DRAM_MEMORY_CONFIG = "DRAM"
DEFAULT_L1_SMALL_SIZE = 0
DEFAULT_TRACE_REGION_SIZE = 0
STEP_TRACE_BYTES = 15_000_000  # what one captured UNet step costs in the fake's trace region
VAE_TRACE_BYTES = 39_000_000
_traces = {}
_default = None


def _log(*words):
    path = os.environ.get("FAKE_TTNN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")


def _chips():
    """(board_type, is_mmio) per device id, as tt-metal numbers them: visible PCIe chips first."""
    boards = [b.strip() for b in os.environ.get("FAKE_TT_BOARDS", "n150 L").split(",") if b.strip()]
    local = [b for b in boards if not b.endswith(" R")]
    remote = [b for b in boards if b.endswith(" R")]
    visible = os.environ.get("TT_VISIBLE_DEVICES", os.environ.get("TT_METAL_VISIBLE_DEVICES"))
    if visible is not None:
        keep = [int(v) for v in visible.split(",") if v.strip()]
        if any(k >= len(local) for k in keep):
            raise RuntimeError(f"TT_FATAL: TT_METAL_VISIBLE_DEVICES={visible}: no such PCIe device")
        pairs = [local[k] for k in keep]
        remote = [r for r in remote if any(r.split()[0] == p.split()[0] for p in pairs)][:len(pairs)]
        local = pairs
    return [(b, True) for b in local] + [(b, False) for b in remote]


def get_arch_name():
    return "blackhole" if _chips() and _chips()[0][0].lower().startswith("p") else "wormhole_b0"


def GetNumPCIeDevices():
    return sum(1 for _, mmio in _chips() if mmio)


def GetNumAvailableDevices():
    return len(_chips())


def get_device_ids():
    return list(range(GetNumAvailableDevices()))


def GetPCIeDeviceID(device_id):
    return device_id


class Device:
    def __init__(self, device_id, l1_small_size, trace_region_size, dispatch_core_config):
        self.id = device_id
        self.l1_small_size = l1_small_size
        self.trace_region_size = trace_region_size
        self.dispatch_core_config = dispatch_core_config
        self.trace_bytes = 0
        self.capturing = None

    def enable_program_cache(self):
        _log("program_cache", self.id)

    def arch(self):
        return get_arch_name()


def _check_cluster(chips):
    """One visible chip of a P300 board: tt-metal picks the CUSTOM cluster type and asserts that a fabric
    mesh graph descriptor path is set (tt-inference-server's ``runner_utils.setup_runner_environment``
    says so, and sets ``TT_MESH_GRAPH_DESC_PATH`` to the tree's ``p150_mesh_graph_descriptor.textproto``)."""
    if len(chips) != 1 or not chips[0][0].lower().startswith("p300"):
        return
    path = os.environ.get("TT_MESH_GRAPH_DESC_PATH")
    if not path or not os.path.isfile(path):
        raise RuntimeError("TT_FATAL: ClusterType::CUSTOM requires a mesh graph descriptor: "
                           f"TT_MESH_GRAPH_DESC_PATH is {path or 'unset'}")
    _log("mesh_graph_desc", os.path.basename(path))


def open_device(device_id=0, l1_small_size=DEFAULT_L1_SMALL_SIZE, trace_region_size=DEFAULT_TRACE_REGION_SIZE,
                dispatch_core_config=None, worker_l1_size=None):
    if os.environ.get("FAKE_TTNN_BAD_STATE"):
        raise RuntimeError("TT_THROW: Timeout waiting for Ethernet core service remote IO request")
    chips = _chips()
    _check_cluster(chips)
    if device_id >= len(chips):
        raise RuntimeError(f"TT_FATAL: Device {device_id} is not available: {len(chips)} devices found")
    _log("env", device_id, f"tt_visible={os.environ.get('TT_VISIBLE_DEVICES')}",
         f"cache={os.environ.get('TT_METAL_CACHE')}")
    _log("open", device_id, chips[device_id][0].replace(" ", "_"), l1_small_size, trace_region_size,
         dispatch_core_config, f"visible={os.environ.get('TT_METAL_VISIBLE_DEVICES')}",
         f"throttle={os.environ.get('TT_MM_THROTTLE_PERF')}")
    return Device(device_id, l1_small_size, trace_region_size, dispatch_core_config)


def CreateDevice(device_id, num_hw_cqs=1, l1_small_size=DEFAULT_L1_SMALL_SIZE,
                 trace_region_size=DEFAULT_TRACE_REGION_SIZE, dispatch_core_config=None, **kwargs):
    return open_device(device_id=device_id, l1_small_size=l1_small_size, trace_region_size=trace_region_size,
                       dispatch_core_config=dispatch_core_config)


def close_device(device):
    _log("close", device.id)


def SetDefaultDevice(device):
    global _default
    _default = device


def GetDefaultDevice():
    return _default


class Tensor:
    """One tensor, or with ``shards`` one per chip of a mesh (row-major mesh order)."""

    def __init__(self, data, device=None, shards=None):
        self.data = data
        self.device = device
        self.shards = shards

    @property
    def shape(self):
        return self.shards[0].shape if self.shards is not None else self.data.shape

    def __getitem__(self, index):
        if self.shards is not None:
            return Tensor(None, self.device, [s[index] for s in self.shards])
        return Tensor(self.data[index], self.device)

    def cpu(self, blocking=True):
        return Tensor(self.data.clone())

    def deallocate(self, force=False):
        pass


def Shape(dims):
    return tuple(dims)


def from_torch(t, dtype=None, layout=None, device=None, memory_config=None, mesh_mapper=None):
    import torch

    t = t.to(torch.bfloat16).to(torch.float32)
    if mesh_mapper is not None:
        return Tensor(None, device, mesh_mapper.split(t))
    return Tensor(t, device)


def to_torch(t):
    return t.data


def from_device(t, blocking=True):
    return Tensor(t.data.clone() if t.data is not None else None)


def concat(tensors, dim=0):
    import torch

    return Tensor(torch.cat([t.data for t in tensors], dim=dim))


def copy_host_to_device_tensor(host, device_tensor, cq_id=0):
    if device_tensor.shards is not None or host.shards is not None:
        host_shards = host.shards if host.shards is not None else [host.data] * len(device_tensor.shards)
        if [tuple(s.shape) for s in host_shards] != [tuple(s.shape) for s in device_tensor.shards]:
            raise RuntimeError(f"TT_FATAL: host shards {[tuple(s.shape) for s in host_shards]} do not match the "
                               f"device tensor's {[tuple(s.shape) for s in device_tensor.shards]}")
        device_tensor.shards = [s.clone() for s in host_shards]
        return
    device_tensor.data = host.data.clone()


def allocate_tensor_on_device(shape, dtype, layout, device, memory_config=None):
    import torch

    if isinstance(device, MeshDevice):
        return Tensor(None, device, [torch.zeros(tuple(shape)) for _ in range(device.get_num_devices())])
    return Tensor(torch.zeros(tuple(shape)), device)


class distribute:
    """``with ttnn.distribute(mapper):`` (the SDXL pipeline loads its weights inside one)."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _trace_commands(device, nbytes):
    """The fake's model code calls this per op: inside a capture it fills the trace region."""
    if device.capturing is not None:
        device.trace_bytes += nbytes


def begin_trace_capture(device, cq_id=0):
    tid = len(_traces) + 1
    device.capturing = tid
    device.trace_bytes = 0
    _log("capture", device.id, tid)
    return tid


def end_trace_capture(device, tid, cq_id=0):
    device.capturing = None
    if device.trace_bytes > device.trace_region_size:
        raise RuntimeError(
            f"TT_FATAL: Creating trace buffers of size {device.trace_bytes}B on device {device.id}, "
            f"but only {device.trace_region_size}B is allocated for trace region.")


def register_trace(tid, fn):
    _traces[tid] = fn


def execute_trace(device, tid, cq_id=0, blocking=True):
    _log("execute", device.id, tid)
    _traces[tid]()


def release_trace(device, tid):
    _log("release", device.id, tid)
    _traces.pop(tid, None)


def synchronize_device(device, queue_id=None):
    pass
