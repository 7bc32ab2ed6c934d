# Fake of the SD folder's conftest.py: turns off pytest.ini's 300 s timeout for these tests, as tt-metal's does.


def pytest_configure(config):
    config.option.timeout = 0
