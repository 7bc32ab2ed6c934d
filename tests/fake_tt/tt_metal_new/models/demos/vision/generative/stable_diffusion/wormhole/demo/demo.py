# Fake of tt-metal's SD 1.4 demo (models/demos/vision/generative/stable_diffusion/wormhole/demo/demo.py):
# the same parametrize (input_path relative to the working folder, 10 prompts, 50 steps, 512x512,
# device_params from common.py), the same prompt loading, log line and output file names. It loads
# no weights: each image has its prompt written into it (see fake_sd_images), and a cold compile
# "takes" FAKE_TT_COMPILE_SECONDS (900 s), which pytest-timeout's timer, when armed, cuts short.

import json
import os
import signal
from random import Random as manual_seed  # the real demo: torch.manual_seed (the fake needs no torch)

import pytest
import ttnn  # noqa: F401
from fake_sd_images import prompt_image
from loguru import logger
from models.common.utility_functions import is_wormhole_b0, profiler
from models.demos.vision.generative.stable_diffusion.wormhole.common import SD_L1_SMALL_SIZE, SD_TRACE_REGION_SIZE


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


def run_demo_inference(
    device,
    is_ci_env,
    is_ci_v2_env,
    model_location_generator,
    reset_seeds,
    input_path,
    num_prompts,
    num_inference_steps,
    image_size=(256, 256),
):
    profiler.clear()

    # Until di/dt issues are resolved
    if is_wormhole_b0():
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
    [{"l1_small_size": SD_L1_SMALL_SIZE, "trace_region_size": SD_TRACE_REGION_SIZE}],
    indirect=True,
)
@pytest.mark.parametrize(
    "input_path",
    (("models/demos/vision/generative/stable_diffusion/wormhole/demo/input_data.json"),),
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
def test_demo(
    device,
    reset_seeds,
    input_path,
    num_prompts,
    num_inference_steps,
    image_size,
    is_ci_env,
    is_ci_v2_env,
    model_location_generator,
):
    run_demo_inference(
        device,
        is_ci_env,
        is_ci_v2_env,
        model_location_generator,
        reset_seeds,
        input_path,
        num_prompts,
        num_inference_steps,
        image_size,
    )
