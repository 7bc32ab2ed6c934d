# Fake of tt-metal's root conftest.py (2024-2025 shape): its own get_updated_device_params (ETH
# dispatch only when WH_ARCH_YAML asks for it), the device fixture asserting that the chip is an
# MMIO one, --device-id, and the --input-path option and fixture (overridden by a test's parametrize).

import os
import random

import numpy as np
import pytest
from tests.scripts.common import run_process_and_get_result  # noqa: F401


@pytest.fixture(scope="function")
def reset_seeds():
    np.random.seed(213919)
    random.seed(213919)

    yield


def get_dispatch_core_type():
    import ttnn

    # TODO: 11059 move dispatch_core_type to device_params when all tests are updated to not use WH_ARCH_YAML env flag
    dispatch_core_type = ttnn.device.DispatchCoreType.WORKER
    if ("WH_ARCH_YAML" in os.environ) and os.environ["WH_ARCH_YAML"] == "wormhole_b0_80_arch_eth_dispatch.yaml":
        dispatch_core_type = ttnn.device.DispatchCoreType.ETH
    return dispatch_core_type


def get_updated_device_params(device_params):
    import ttnn

    dispatch_core_type = get_dispatch_core_type()
    new_device_params = device_params.copy()
    dispatch_core_axis = new_device_params.pop(
        "dispatch_core_axis",
        ttnn.DispatchCoreAxis.COL if ttnn.get_arch_name() == "blackhole" else ttnn.DispatchCoreAxis.ROW,
    )
    dispatch_core_config = ttnn.DispatchCoreConfig(dispatch_core_type, dispatch_core_axis)
    new_device_params["dispatch_core_config"] = dispatch_core_config
    return new_device_params


@pytest.fixture(scope="function")
def device_params(request):
    return getattr(request, "param", {})


@pytest.fixture(scope="function")
def device(request, device_params):
    import ttnn

    device_id = request.config.getoption("device_id")
    request.node.pci_ids = [ttnn.GetPCIeDeviceID(device_id)]

    num_devices = ttnn.GetNumPCIeDevices()
    assert device_id < num_devices, "CreateDevice not supported for non-mmio device"
    updated_device_params = get_updated_device_params(device_params)
    device = ttnn.CreateDevice(device_id=device_id, **updated_device_params)
    ttnn.SetDefaultDevice(device)

    yield device

    ttnn.synchronize_device(device)
    ttnn.close_device(device)


def pytest_addoption(parser):
    parser.addoption(
        "--device-id",
        type=int,
        default=0,
        help="Target device id",
    )
    parser.addoption(
        "--input-path",
        action="store",
        default="",
        help="Path to json file with inputs",
    )


@pytest.fixture
def input_path(request):
    return request.config.getoption("--input-path")
