class UNet2DConditionModel:
    def __init__(self, device, parameters, batch_size, input_height, input_width):
        self.torch_unet = parameters["model"]
        self.size = (input_height, input_width)
