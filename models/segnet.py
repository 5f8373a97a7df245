"""SegNet (Badrinarayanan et al. 2017): a VGG16-style encoder whose max-pool indices drive the
decoder's unpooling. ``width`` is the first stage's channels (64 = VGG16)."""
from __future__ import annotations

import torch
from torch import nn

from models.registry import register_model

# VGG16's five stages: (convolutions, channel multiple of width).
VGG16_STAGES = ((2, 1), (2, 2), (3, 4), (3, 8), (3, 8))


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stack(channels: list[int]) -> nn.Sequential:
    return nn.Sequential(*(conv_bn_relu(a, b) for a, b in zip(channels, channels[1:])))


class SegNet(nn.Module):
    def __init__(self, n_channels: int = 3, n_classes: int = 2, width: int = 64,
                 bilinear: bool = False):
        super().__init__()
        del bilinear  # accepted so one config serves every model; SegNet always unpools
        self.n_channels, self.n_classes = n_channels, n_classes
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        widths = [width * mult for _, mult in VGG16_STAGES]
        encoders, decoders = [], []
        in_ch = n_channels
        for (convs, _), out_ch in zip(VGG16_STAGES, widths):
            encoders.append(conv_stack([in_ch] + [out_ch] * convs))
            in_ch = out_ch
        # The decoder mirrors the encoder: each stage keeps its channels, then narrows to the
        # width of the stage above it; the last stage ends in class logits.
        targets = widths[-2::-1] + [widths[0]]
        for (convs, _), ch, out_ch in zip(VGG16_STAGES[::-1], widths[::-1], targets):
            decoders.append(conv_stack([ch] * convs + [out_ch]))
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        self.classifier = nn.Conv2d(widths[0], n_classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []  # (indices, size before pooling) per stage, for the unpooling
        for encoder in self.encoders:
            x = encoder(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            pooled.append((indices, size))
        for decoder, (indices, size) in zip(self.decoders, reversed(pooled)):
            # output_size makes odd sizes round-trip: pooling floors, unpooling restores.
            x = self.unpool(x, indices, output_size=size)
            x = decoder(x)
        return self.classifier(x)


@register_model("segnet", min_side=2 ** len(VGG16_STAGES))  # one pooling per stage
def build_segnet(n_channels: int = 3, n_classes: int = 2, width: int = 64,
                 bilinear: bool = False) -> SegNet:
    return SegNet(n_channels=n_channels, n_classes=n_classes, width=width, bilinear=bilinear)
