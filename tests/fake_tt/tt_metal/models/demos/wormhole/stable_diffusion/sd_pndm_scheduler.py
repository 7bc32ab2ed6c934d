from diffusers import PNDMScheduler


class TtPNDMScheduler(PNDMScheduler):
    """The fake wraps diffusers' PNDM: same timesteps, host tensors."""

    def __init__(self, device=None, **kwargs):
        super().__init__(**kwargs)
