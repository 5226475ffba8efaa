"""Decoding images and label maps with Pillow, and the classification evaluation transform.

Tasks hand a system an ``ImageRequest`` (a path plus the protocol: resize/crop); the system decodes.
These functions are the one implementation of that protocol, so every classifier in the suite
(CatLIP's ViTs included) sees pixels prepared the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""What an ImageFolder layout counts as an image (torchvision's list, case-insensitive)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def open_rgb(path: Path) -> Any:
    """A decoded RGB ``PIL.Image``; grayscale/CMYK/palette files (all present in ImageNet) become 3-channel."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a decodable image ({e})") from e


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only (no pixel decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a decodable image ({e})") from e


def load_label_map(path: Path) -> np.ndarray:
    """A single-channel label PNG (palette or grayscale) as an (H, W) uint8 array of the stored values.

    Palette PNGs are read as their indices, never converted through the palette: the index is the label.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"{path}: label map must be a single-channel PNG (mode L or P), got mode {im.mode}")
            arr = np.asarray(im)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: annotation file not found") from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{path}: not a decodable PNG ({e})") from e
    return arr.astype(np.int64) if arr.dtype != np.uint8 else arr


def classification_transform(resize: int | None, crop: int | None, mean: Sequence[float] = IMAGENET_MEAN,
                             std: Sequence[float] = IMAGENET_STD) -> Any:
    """The standard evaluation transform: shorter side to ``resize`` (bilinear), center crop ``crop``, normalise."""
    from torchvision import transforms as T

    steps: list[Any] = []
    if resize:
        steps.append(T.Resize(int(resize), interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    if crop:
        steps.append(T.CenterCrop(int(crop)))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def load_for_classification(request: Any, *, default_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                            std: Sequence[float] = IMAGENET_STD) -> Any:
    """A (3, H, W) float tensor for an ``ImageRequest``, following its resize/crop protocol.

    A request without a protocol (resize and crop None) is resized and cropped to ``default_size``,
    the system's own input resolution.
    """
    resize, crop = request.resize, request.crop
    if resize is None and crop is None:
        resize, crop = default_size, default_size
    return classification_transform(resize, crop, mean, std)(open_rgb(Path(request.path)))
