from diffusers import PNDMScheduler


class TtPNDMScheduler(PNDMScheduler):
    """The fake wraps diffusers' PNDM: the demo's keyword arguments, host tensors."""

    def __init__(self, device=None, **kwargs):
        super().__init__(**kwargs)
        self.ets = []
