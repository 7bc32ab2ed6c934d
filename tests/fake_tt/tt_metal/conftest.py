import pytest


def pytest_addoption(parser):
    parser.addoption("--input-path", action="store", default=None)


@pytest.fixture
def input_path(request):
    return request.config.getoption("--input-path")
