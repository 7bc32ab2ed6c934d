# Fake of an older tests/scripts/common.py: no device helpers yet (the root conftest.py has them).

import os
import subprocess as sp


def run_process_and_get_result(command, extra_env={}, capture_output=True):  # noqa: B006 (tt-metal's signature)
    return sp.run(command, shell=True, capture_output=capture_output, env={**os.environ, **extra_env})
