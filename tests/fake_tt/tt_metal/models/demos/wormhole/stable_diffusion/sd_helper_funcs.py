"""Fake compile_trace_sd: the 'trace' runs the real denoise loop on the host (torch UNet + PNDM +
VAE), reading the latents and text embeddings from the device tensors, as the chip would."""

import torch
import ttnn


def compile_trace_sd(device, model, config, tt_vae, input_latents, _tlist, time_step, guidance_scale,
                     ttnn_scheduler, num_inference_steps):
    embeds = ttnn.allocate_tensor_on_device(ttnn.Shape([2, 96, 768]), ttnn.bfloat16, ttnn.TILE_LAYOUT, device)
    output = ttnn.Tensor(None, device)
    tid = ttnn.begin_trace_capture(device, cq_id=0)

    def run():
        unet, vae = model.torch_unet, tt_vae.torch_vae
        ttnn_scheduler.set_timesteps(num_inference_steps)
        latents = input_latents.data.clone()
        cond = embeds.data[:, :77]
        with torch.inference_mode():
            for t in ttnn_scheduler.timesteps:
                pred = unet(torch.cat([latents, latents]), t, encoder_hidden_states=cond).sample
                uncond, text = pred.chunk(2)
                latents = ttnn_scheduler.step(uncond + guidance_scale * (text - uncond), t, latents).prev_sample
            output.data = vae.decode(latents / vae.config.scaling_factor).sample

    ttnn.end_trace_capture(device, tid, cq_id=0)
    ttnn.register_trace(tid, run)
    return embeds, output, tid
