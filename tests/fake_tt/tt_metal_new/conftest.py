# Fake of tt-metal's root conftest.py (2025-2026 shape): the fixtures test_demo asks for, the
# --input-path option and its fixture (which a test's own parametrize overrides), --device-id,
# and the device fixture opening one chip with get_updated_device_params.

import os
import random

import numpy as np
import pytest
from loguru import logger
from tests.scripts.common import get_updated_device_params, run_process_and_get_result  # noqa: F401


@pytest.fixture(scope="function")
def reset_seeds():
    np.random.seed(213919)
    random.seed(213919)

    yield


@pytest.fixture(scope="function")
def is_ci_env():
    if os.getenv("CI") == "true":
        return True
    return False


@pytest.fixture(scope="session")
def is_ci_v2_env():
    yield "TT_GH_CI_INFRA" in os.environ


@pytest.fixture(scope="session")
def model_location_generator(is_ci_v2_env):
    def model_location_generator_(model_version, model_subdir="", download_if_ci_v2=False, ci_v2_timeout_in_s=300):
        logger.info(f"For model location, local copy not found, so likely downloading straight from HF: {model_version}")
        return model_version

    return model_location_generator_


@pytest.fixture(scope="function")
def device_params(request):
    return getattr(request, "param", {})


@pytest.fixture(scope="function")
def device(request, device_params):
    import ttnn

    device_id = request.config.getoption("device_id")
    request.node.pci_ids = [ttnn.GetPCIeDeviceID(device_id)]

    original_default_device = ttnn.GetDefaultDevice()

    updated_device_params = get_updated_device_params(device_params)
    device = ttnn.CreateDevice(device_id=device_id, **updated_device_params)
    ttnn.SetDefaultDevice(device)

    yield device

    ttnn.SetDefaultDevice(original_default_device)
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
