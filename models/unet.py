"""UNet (Ronneberger et al. 2015) wired from unet_parts; width=64 is Pytorch-UNet's network."""
from __future__ import annotations

import torch
from torch import nn

from models.registry import register_model
from models.unet_parts import DoubleConv, Down, OutConv, Up


class UNet(nn.Module):
    def __init__(self, n_channels: int = 3, n_classes: int = 2, bilinear: bool = False,
                 width: int = 64):
        super().__init__()
        self.n_channels, self.n_classes, self.bilinear = n_channels, n_classes, bilinear
        w = width
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // factor)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up4 = Up(2 * w, w, bilinear)
        self.outc = OutConv(w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


@register_model("unet", min_side=2 ** 4)  # down1..down4 each halve the image
def build_unet(n_channels: int = 3, n_classes: int = 2, bilinear: bool = False,
               width: int = 64) -> UNet:
    return UNet(n_channels=n_channels, n_classes=n_classes, bilinear=bilinear, width=width)
