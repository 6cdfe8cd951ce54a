"""Bags of tiled patches for multiple-instance classification (`MilForImageClassification`): a processed mammogram
cut into the tile grid of the tiled-patch paper, background tiles left out, bags padded into a batch."""

import torch

from ..processing.patches import Tile, tiles


def image_bag(
    image: torch.Tensor, breast_mask: torch.Tensor, tile_size: int, overlap: float = 0.5, max_background: float = 0.2
) -> tuple[torch.Tensor, list[Tile]]:
    """The tiles (tiles, channels, tile_size, tile_size) of a processed image (channels, height, width), and where
    each one lies. `breast_mask` (height, width) is the processor's (`return_breast_mask=True`); tiles with more than
    `max_background` of background are left out, but a bag always keeps its most breast-filled tile."""
    if min(image.shape[-2:]) < tile_size:
        raise ValueError(f"A {tuple(image.shape[-2:])} image is smaller than one {tile_size} px tile.")
    mask = breast_mask.numpy()
    kept = tiles(mask, tile_size, overlap, max_background)
    if not kept:
        kept = [min(tiles(mask, tile_size, overlap, max_background=1.0), key=lambda tile: tile.background_fraction)]
    crops = [image[:, tile.box.top : tile.box.bottom, tile.box.left : tile.box.right] for tile in kept]
    return torch.stack(crops), kept


def pad_bags(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags of different lengths -> `pixel_values` (batch, longest, channels, size, size), zero-padded, and
    `tile_mask` (batch, longest), True on real tiles."""
    longest = max(len(bag) for bag in bags)
    pixel_values = bags[0].new_zeros(len(bags), longest, *bags[0].shape[1:])
    tile_mask = torch.zeros(len(bags), longest, dtype=torch.bool)
    for index, bag in enumerate(bags):
        pixel_values[index, : len(bag)] = bag
        tile_mask[index, : len(bag)] = True
    return pixel_values, tile_mask


__all__ = ["image_bag", "pad_bags"]
