import ttnn


class UNet2DConditionModel:
    """Fake: the torch UNet from preprocess_model_parameters, run on the host; in a trace capture
    each call fills the trace region as a UNet step would."""

    def __init__(self, device, parameters, batch_size, input_height, input_width):
        self.device = device
        self.torch_unet = parameters["model"]
        self.size = (input_height, input_width)

    def __call__(self, sample, timestep=None, encoder_hidden_states=None, t=None, **kwargs):
        ttnn._trace_commands(self.device, ttnn.STEP_TRACE_BYTES)
        if self.device.capturing is not None:
            return None
        return self.torch_unet(sample, t, encoder_hidden_states=encoder_hidden_states).sample
