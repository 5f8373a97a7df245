"""Embedded default data set: synthetic crack images, a pure function of (seed, image index).

Backgrounds are concrete- or asphalt-like multi-octave noise with aggregate speckles; cracks are
branching random walks of varying width and contrast, about 1–6 % of the pixels, as in real crack
data. Nothing is downloaded, and image i is the same whatever the number of images asked for.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CRACK_VALUE = 255  # masks are written as 0/255 PNGs, like most crack data sets


def make_synthetic(n_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, size, size, 3) and 0/255 masks (N, size, size), both uint8."""
    images = np.empty((n_images, size, size, 3), np.uint8)
    masks = np.empty((n_images, size, size), np.uint8)
    for i in range(n_images):
        images[i], masks[i] = synthetic_pair(size, np.random.default_rng([seed, i]))
    return images, masks


def synthetic_pair(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    asphalt = rng.random() < 0.5
    background = asphalt_texture(size, rng) if asphalt else concrete_texture(size, rng)
    mask = crack_mask(size, rng)
    # Cracks are shadowed gaps: darker than the surface by a varying contrast, soft at the edge.
    depth = rng.uniform(0.35, 0.75)
    soft = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(0.8)), np.float32)
    shade = 1.0 - depth * soft[..., None] / 255.0
    tint = rng.uniform(0.93, 1.07, size=3).astype(np.float32)  # lighting colour
    image = np.clip(background[..., None] * shade * tint, 0, 255).astype(np.uint8)
    return image, mask


def noise(size: int, rng: np.random.Generator, octaves: int = 5, persistence: float = 0.55):
    """Multi-octave value noise in [0, 1]: coarse grids upsampled bicubically and summed."""
    total = np.zeros((size, size), np.float32)
    amplitude, weight = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.random((cells, cells)).astype(np.float32)
        layer = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
        total += amplitude * np.asarray(layer)
        weight += amplitude
        amplitude *= persistence
    total /= weight
    return (total - total.min()) / max(float(np.ptp(total)), 1e-6)


def concrete_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(125, 175)
    texture = base + 45 * (noise(size, rng) - 0.5) + rng.normal(0, 6, (size, size))
    pores = rng.random((size, size)) < 0.004  # small air voids
    texture[pores] *= 0.6
    return texture.astype(np.float32)


def asphalt_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(60, 100)
    texture = base + 25 * (noise(size, rng, octaves=4) - 0.5) + rng.normal(0, 10, (size, size))
    stones = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(stones)
    for _ in range(int(size * size / 90)):  # bright aggregate, 1–3 px pebbles
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.5, 1.6)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.uniform(40, 90)))
    return texture + np.asarray(stones, np.float32)


def crack_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 3))):
        start = edge_point(size, rng)
        heading = np.arctan2(size / 2 - start[1], size / 2 - start[0]) + rng.normal(0, 0.5)
        random_walk_crack(draw, start, heading, size, rng, width=rng.uniform(1.0, 3.2), depth=0)
    return np.asarray(canvas, np.uint8).copy()


def edge_point(size: int, rng: np.random.Generator) -> tuple[float, float]:
    t = rng.uniform(0, size)
    return [(t, 0.0), (t, size - 1.0), (0.0, t), (size - 1.0, t)][int(rng.integers(4))]


def random_walk_crack(draw, start, heading, size, rng, width, depth):
    """Draw one crack; it wanders, thins out and sometimes branches (at most two levels)."""
    x, y = start
    reach = rng.uniform(0.3, 0.65) if depth == 0 else rng.uniform(0.1, 0.4)
    steps = int(reach * size)
    for _ in range(steps):
        heading += rng.normal(0, 0.25)
        length = rng.uniform(1.5, 3.0)
        nx, ny = x + length * np.cos(heading), y + length * np.sin(heading)
        w = max(1, int(round(width * rng.uniform(0.7, 1.3))))
        draw.line([(x, y), (nx, ny)], fill=CRACK_VALUE, width=w)
        x, y = nx, ny
        if not (-2 <= x <= size + 1 and -2 <= y <= size + 1):
            return
        if depth < 2 and rng.random() < 0.02:
            branch = heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
            random_walk_crack(draw, (x, y), branch, size, rng, width * 0.6, depth + 1)
