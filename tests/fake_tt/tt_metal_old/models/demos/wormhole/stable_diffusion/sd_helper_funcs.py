"""Fake of sd_helper_funcs.py: compile_trace_sd with the real signature and steps (a compile run,
then a captured run); the captured "trace" runs the denoise loop on the host, reading the latents
and text embeddings from the device tensors as the chip would."""

import torch
import ttnn


def run(model, config, tt_vae, input_latents, input_encoder_hidden_states, _tlist, time_step, guidance_scale,
        ttnn_scheduler):
    latents = input_latents.data.clone() if input_latents.data is not None else None
    cond = input_encoder_hidden_states.data[:, :77] if input_encoder_hidden_states.data is not None else None
    with torch.inference_mode():
        for index in range(len(time_step)):
            t = ttnn_scheduler.timesteps[index]
            pred = model(torch.cat([latents, latents]) if latents is not None else None, t=t,
                         encoder_hidden_states=cond, config=config)
            if pred is not None:
                uncond, text = pred.chunk(2)
                latents = ttnn_scheduler.step(uncond + guidance_scale * (text - uncond), t, latents).prev_sample
        return tt_vae.decode(latents)


def compile_trace_sd(
    device, model, config, tt_vae, input_latents, _tlist, time_step, guidance_scale, ttnn_scheduler, num_inference_steps
):
    ttnn_text_embeddings_device = ttnn.allocate_tensor_on_device(
        ttnn.Shape([2, 96, 768]), ttnn.bfloat16, ttnn.TILE_LAYOUT, device, ttnn.DRAM_MEMORY_CONFIG
    )
    # COMPILE
    ttnn_scheduler.set_timesteps(num_inference_steps)
    ttnn_text_embeddings_device.data = None
    # CAPTURE
    tid = ttnn.begin_trace_capture(device, cq_id=0)
    run(model, config, tt_vae, input_latents, ttnn_text_embeddings_device, _tlist, time_step, guidance_scale,
        ttnn_scheduler)
    ttnn.end_trace_capture(device, tid, cq_id=0)
    ttnn.synchronize_device(device)
    output = ttnn.Tensor(None, device)

    def replay():
        ttnn_scheduler.set_timesteps(num_inference_steps)
        output.data = run(model, config, tt_vae, input_latents, ttnn_text_embeddings_device, _tlist, time_step,
                          guidance_scale, ttnn_scheduler)

    ttnn.register_trace(tid, replay)
    return ttnn_text_embeddings_device, output, tid
