# Fake of tt-metal's tests/scripts/common.py (device helpers shared with the root conftest.py).

import os
import subprocess as sp

from loguru import logger


def run_process_and_get_result(command, extra_env={}, capture_output=True):  # noqa: B006 (tt-metal's signature)
    return sp.run(command, shell=True, capture_output=capture_output, env={**os.environ, **extra_env})


# Device helpers to be shared with top-level conftest.py and other conftest.py files that will handle open/close of devices.


def get_updated_device_params(device_params):
    import ttnn

    new_device_params = device_params.copy()

    dispatch_core_axis = new_device_params.pop("dispatch_core_axis", None)
    dispatch_core_type = new_device_params.pop("dispatch_core_type", None)

    if ttnn.device.is_blackhole() and dispatch_core_axis == ttnn.DispatchCoreAxis.ROW:
        logger.warning("blackhole arch does not support DispatchCoreAxis.ROW, using DispatchCoreAxis.COL instead.")
        dispatch_core_axis = ttnn.DispatchCoreAxis.COL

    dispatch_core_config = ttnn.DispatchCoreConfig(dispatch_core_type, dispatch_core_axis)
    new_device_params["dispatch_core_config"] = dispatch_core_config

    return new_device_params
