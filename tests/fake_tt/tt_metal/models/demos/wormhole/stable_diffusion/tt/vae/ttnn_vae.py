class Vae:
    def __init__(self, torch_vae=None, device=None):
        self.torch_vae = torch_vae
