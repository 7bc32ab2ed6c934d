"""What the fake demos draw: the prompt, written into the image (first pixel row: its UTF-8 bytes
in the red channel, 0-terminated; below: the text), so a test can read back which prompt made it."""

from PIL import Image, ImageDraw


def prompt_image(prompt: str, height: int, width: int, background=(40, 40, 60)) -> Image.Image:
    data = prompt.encode()[: width - 1] + b"\0"
    image = Image.new("RGB", (width, height), background)
    for x, byte in enumerate(data):
        image.putpixel((x, 0), (byte, 255 - byte, 0))
    draw = ImageDraw.Draw(image)
    words, line, y = prompt.split(), "", 24
    for word in words + [""]:
        if word and len(line) + len(word) < width // 8:
            line = f"{line} {word}".strip()
            continue
        draw.text((16, y), line, fill=(255, 255, 255))
        line, y = word, y + 14
    return image


def read_prompt(image: Image.Image) -> str:
    data = bytearray()
    for x in range(image.width):
        byte = image.getpixel((x, 0))[0]
        if byte == 0:
            break
        data.append(byte)
    return data.decode(errors="replace")


# The fake SDXL pipelines encode prompts with the model's own text encoders; the chips see only
# embeddings. To draw which prompt reached which chip, the fake remembers the text of each
# embedding it made (keyed by its bfloat16 bytes, what the device holds).
_TEXTS: dict[bytes, str] = {}


def _key(embedding) -> bytes:
    import torch

    return embedding.detach().to(torch.bfloat16).to(torch.float32).contiguous().numpy().tobytes()


def remember(embeddings, prompts) -> None:
    for row, prompt in zip(embeddings, prompts):
        _TEXTS[_key(row)] = prompt


def recall(embedding) -> str:
    return _TEXTS.get(_key(embedding), "<an embedding no prompt made>")


def sdxl_image_tensor(prompt: str, latents, size: int = 1024):
    """What the fake SDXL chip returns for one prompt: (3, size, size) in [-1, 1], its background shade
    taken from the chip's latents (so each seed gives other pixels)."""
    import numpy as np
    import torch

    shade = int(abs(float(latents.float().sum())) * 7) % 200
    image = prompt_image(prompt, size, size, background=(shade, 40, 60))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
