# Fake of models/experimental/stable_diffusion_xl_base/tests/test_common.py (mid-2025 shape): its
# constants, before the fabric config for cfg-parallel existed.

SDXL_L1_SMALL_SIZE = 47000
SDXL_TRACE_REGION_SIZE = 34000000
SDXL_CI_WEIGHTS_PATH = "/mnt/MLPerf/tt_dnn-models/hf_home"
