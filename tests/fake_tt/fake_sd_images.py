"""What the fake demos draw: the prompt, written into the image (first pixel row: its UTF-8 bytes
in the red channel, 0-terminated; below: the text), so a test can read back which prompt made it."""

from PIL import Image, ImageDraw


def prompt_image(prompt: str, height: int, width: int) -> Image.Image:
    data = prompt.encode()[: width - 1] + b"\0"
    image = Image.new("RGB", (width, height), (40, 40, 60))
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
