# Fake of tt-metal's SD 1.4 demo as it was in models/demos/wormhole/stable_diffusion (trace era,
# before common.py): literal device_params, input_path relative to the working folder, 10 prompts,
# 50 steps, 512x512, the same prompt loading, log line and output file names. It loads no weights:
# each image has its prompt written into it (see fake_sd_images), and a cold compile "takes"
# FAKE_TT_COMPILE_SECONDS (900 s), which pytest-timeout's timer (pytest.ini: 300 s) cuts short.

import json
import os
import signal
from random import Random as manual_seed  # the real demo: torch.manual_seed (the fake needs no torch)

import pytest
import ttnn  # noqa: F401
from fake_sd_images import prompt_image
from loguru import logger
from models.utility_functions import enable_persistent_kernel_cache, profiler


def load_inputs(input_path):
    with open(input_path) as f:
        input_data = json.load(f)
        assert input_data, "Input data is empty."
        prompt = [item["prompt"] for item in input_data]
        return prompt


def _cold_compile():
    seconds = float(os.environ.get("FAKE_TT_COMPILE_SECONDS", "900"))
    armed = signal.getitimer(signal.ITIMER_REAL)[0]
    if armed and armed < seconds:
        os.kill(os.getpid(), signal.SIGALRM)  # pytest-timeout's timer runs out mid-compile


def run_demo_inference(device, reset_seeds, input_path, num_prompts, num_inference_steps, image_size=(256, 256)):
    enable_persistent_kernel_cache()
    profiler.clear()

    # Until di/dt issues are resolved
    os.environ["TT_MM_THROTTLE_PERF"] = "5"
    assert (
        num_inference_steps >= 4
    ), f"PNDMScheduler only supports num_inference_steps >= 4. Found num_inference_steps={num_inference_steps}"

    height, width = image_size
    guidance_scale = 7.5  # Scale for classifier-free guidance
    generator = manual_seed(174)  # 10233 Seed generator to create the inital latent noise
    i = 0

    inputs = load_inputs(input_path)
    input_prompts = inputs[:num_prompts]

    _cold_compile()
    while i < num_prompts:
        input_prompt = [input_prompts[i]]
        i = i + 1

        experiment_name = f"input_data_{i}_{height}x{width}"
        logger.info(f"input prompt : {input_prompt}")
        profiler.start(f"inference_prompt_{i}")
        pil_images = prompt_image(input_prompt[0], height, width)
        profiler.end(f"inference_prompt_{i}")
        ttnn_output_path = f"{experiment_name}_ttnn.png"
        pil_images.save(ttnn_output_path)
    profiler.print()
    return guidance_scale, generator


@pytest.mark.parametrize(
    "device_params",
    [{"l1_small_size": 11 * 8192, "trace_region_size": 789835776}],
    indirect=True,
)
@pytest.mark.parametrize(
    "input_path",
    (("models/demos/wormhole/stable_diffusion/demo/input_data.json"),),
    ids=["default_input"],
)
@pytest.mark.parametrize(
    "num_prompts",
    ((10),),
)
@pytest.mark.parametrize(
    "num_inference_steps",
    ((50),),
)
@pytest.mark.parametrize(
    "image_size",
    ((512, 512),),
)
def test_demo(device, reset_seeds, input_path, num_prompts, num_inference_steps, image_size):
    run_demo_inference(device, reset_seeds, input_path, num_prompts, num_inference_steps, image_size)
