# Fake of models/experimental/stable_diffusion_xl_base/tests/test_common.py (2026 shape): its
# constants, as the SDXL demo imports them (the helpers it also holds are the fake pipeline's own).

import ttnn

# For basic SDXL demo, L1 small size of 23000 is enough,
# but for inpainting/img2img, we need larger L1 small due
# to having an extra VAE encode call, which increases it.
SDXL_L1_SMALL_SIZE = 30000
SDXL_TRACE_REGION_SIZE = 34000000
SDXL_CI_WEIGHTS_PATH = "/mnt/MLPerf/tt_dnn-models/hf_home"
SDXL_FABRIC_CONFIG = ttnn.FabricConfig.FABRIC_1D
MAX_SEQUENCE_LENGTH = 77
TEXT_ENCODER_2_PROJECTION_DIM = 1280
CONCATENATED_TEXT_EMBEDINGS_SIZE = 2048
