"""The pix2pix discriminator: a PatchGAN that scores overlapping patches as real or fake.

A pure ``nn.Module``: layers only. It sees the source and a target (real or generated)
concatenated on the channel axis, as pix2pix's conditional D does.
"""

from __future__ import annotations

import torch
from torch import nn

from musicpairs.model.unet import norm_layer


class PatchGAN(nn.Module):
    """pix2pix's ``NLayerDiscriminator``: ``n_layers`` 4x4 stride-2 convolutions, one
    stride-1, then a 1-channel stride-1 convolution giving one logit per patch.

    With ``n_layers=3`` each logit sees a 70x70 window of the input (pix2pix's
    ``basic`` D; 2.77 M parameters with 6 input channels and ``ndf=64``). The output
    is raw logits: the loss in :mod:`train` applies the sigmoid (BCE) or not (LSGAN).

    Args:
        in_channels: Source planes + target planes.
        ndf: Filters of the first layer (doubling per layer, at most 8x).
        n_layers: Stride-2 layers.
        norm: ``"batch"`` or ``"instance"``.

    Shapes: (B, in_channels, H, W) -> (B, 1, H', W'), H' = H / 2**n_layers - 2.
    """

    def __init__(self, in_channels: int, *, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch"):
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride, 1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)  # (B, 1, H', W') logits
