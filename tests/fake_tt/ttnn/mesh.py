"""Fake of ttnn's multi-device API, as tt-metal's root conftest ``mesh_device`` fixture and the SDXL
pipeline call it: ``MeshShape``, ``open_mesh_device(mesh_shape=, **device_params)``, ``close_mesh_device``,
``set_fabric_config``, ``FabricConfig``, a ``MeshDevice`` (``get_num_devices``, ``shape``, ``reshape``,
``get_submeshes``), and the mesh mappers ``ReplicateTensorToMesh``, ``ShardTensorToMesh(dim=)`` and
``ShardTensor2dMesh(mesh_shape, dims=)``. A host tensor made with a mapper holds one shard per chip,
in row-major mesh order; copying it to a device tensor needs every shard's shape to match.

Quirks copied: a mesh needs every chip the system has unless it is a sub-shape the chips allow
(``TT_FATAL`` otherwise, as the runtime says); a mesh over an N300's remote chip opens fine (the
mesh reaches it through its PCIe chip); the fabric config must be set before the mesh opens.
"""

import enum
import os


class FabricConfig(enum.Enum):
    DISABLED = "DISABLED"
    FABRIC_1D = "FABRIC_1D"
    FABRIC_1D_RING = "FABRIC_1D_RING"
    FABRIC_2D = "FABRIC_2D"


_fabric = FabricConfig.DISABLED


class Topology(enum.Enum):
    Linear = "Linear"
    Ring = "Ring"


def set_fabric_config(config, *args):
    global _fabric
    _fabric = config


class MeshShape:
    def __init__(self, *dims):
        self.dims = tuple(int(d) for d in dims)

    def __iter__(self):
        return iter(self.dims)

    def __getitem__(self, i):
        return self.dims[i]

    def mesh_size(self):
        n = 1
        for d in self.dims:
            n *= d
        return n

    def __repr__(self):
        return f"MeshShape([{', '.join(map(str, self.dims))}])"


class MeshDevice:
    def __init__(self, shape, l1_small_size, trace_region_size, dispatch_core_config):
        self.shape = shape
        self.l1_small_size = l1_small_size
        self.trace_region_size = trace_region_size
        self.dispatch_core_config = dispatch_core_config
        self.trace_bytes = 0
        self.capturing = None
        self.id = "mesh"

    def get_num_devices(self):
        return self.shape.mesh_size()

    def reshape(self, shape):
        if shape.mesh_size() != self.get_num_devices():
            raise RuntimeError(f"TT_FATAL: cannot reshape a mesh of {self.get_num_devices()} devices to {shape}")
        from . import _log

        _log("reshape", "x".join(map(str, shape)))
        self.shape = shape

    def get_submeshes(self):
        return []

    def get_devices(self):
        return list(range(self.get_num_devices()))


def open_mesh_device(mesh_shape, l1_small_size=0, trace_region_size=0, dispatch_core_config=None, **kwargs):
    from . import _chips, _log

    chips = _chips()
    if os.environ.get("FAKE_TTNN_BAD_STATE"):
        raise RuntimeError("TT_THROW: Timeout waiting for Ethernet core service remote IO request")
    if mesh_shape.mesh_size() > len(chips):
        raise RuntimeError(f"TT_FATAL: Requested mesh {mesh_shape} needs {mesh_shape.mesh_size()} devices; "
                           f"{len(chips)} available")
    _log("open_mesh", "x".join(map(str, mesh_shape)), ",".join(b.replace(" ", "_") for b, _ in chips),
         l1_small_size, trace_region_size, f"fabric={_fabric.name}",
         f"visible={os.environ.get('TT_METAL_VISIBLE_DEVICES')}")
    return MeshDevice(mesh_shape, l1_small_size, trace_region_size, dispatch_core_config)


def close_mesh_device(mesh):
    from . import _log

    _log("close_mesh", "x".join(map(str, mesh.shape)))


def get_num_devices():
    from . import GetNumAvailableDevices

    return GetNumAvailableDevices()


def get_pcie_device_ids():
    from . import GetNumPCIeDevices

    return list(range(GetNumPCIeDevices()))


# ------------------------------------------------------------------ mappers: host tensor → one shard per chip


class ReplicateTensorToMesh:
    def __init__(self, mesh_device):
        self.n = mesh_device.get_num_devices()

    def split(self, t):
        return [t.clone() for _ in range(self.n)]


class ShardTensorToMesh:
    def __init__(self, mesh_device, dim):
        self.n, self.dim = mesh_device.get_num_devices(), dim

    def split(self, t):
        if t.shape[self.dim] % self.n:
            raise RuntimeError(f"TT_FATAL: dim {self.dim} of size {t.shape[self.dim]} does not split over {self.n} devices")
        return list(t.chunk(self.n, dim=self.dim))


class ShardTensor2dMesh:
    """``dims[i]``: the tensor dim that mesh dim ``i`` splits (None: replicated along it)."""

    def __init__(self, mesh_device, mesh_shape, dims):
        self.rows, self.cols = mesh_shape
        self.dims = dims

    def split(self, t):
        rows = t.chunk(self.rows, dim=self.dims[0]) if self.dims[0] is not None else [t] * self.rows
        out = []
        for r in rows:
            out += list(r.chunk(self.cols, dim=self.dims[1])) if self.dims[1] is not None else [r] * self.cols
        return [s.clone() for s in out]
