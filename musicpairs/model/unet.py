"""The pix2pix generator: a U-Net with skip connections (Isola et al., 2017).

A pure ``nn.Module``: layers only. Losses and the update live in :mod:`train`.
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm (pix2pix's default) or InstanceNorm without affine parameters or running
    statistics (pix2pix's ``instance``)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be 'batch' or 'instance', not {kind!r}")


def max_depth(height: int, width: int) -> int:
    """The most stride-2 levels a [height, width] input takes (down to 1 on its short
    side), at most 8 (pix2pix's ``unet_256``)."""
    depth, side = 0, min(height, width)
    while side % 2 == 0 and side > 1 and depth < 8:
        side //= 2
        depth += 1
    return depth


def _live(n_in: int, n_out: int, transposed: bool, kernel: int, stride: int,
          padding: int) -> tuple[int, int]:
    """The kernel taps [first, last + 1) of a convolution from ``n_in`` to ``n_out`` cells
    along one side that ever meet a real cell: one the input has (a convolution; the
    others only read the zero padding) or one the output keeps (a transposed
    convolution; the others only write what is cropped)."""
    if transposed:
        live = [t for t in range(kernel)
                if any(0 <= i * stride - padding + t < n_out for i in range(n_in))]
    else:
        live = [t for t in range(kernel)
                if any(0 <= o * stride - padding + t < n_in for o in range(n_out))]
    return live[0], live[-1] + 1


class UNet(nn.Module):
    """U-Net: ``depth`` 4x4 stride-2 convolutions down, as many transposed ones up, each
    decoder level joined to its encoder twin by a skip connection.

    As pix2pix's ``UnetGenerator``: level ``i`` has ``min(ngf * 2**i, max_filters)``
    channels (``max_filters`` is ``8 * ngf`` unless given);
    LeakyReLU(0.2) down, ReLU up; no norm on the outermost encoder nor on the innermost
    level's encoder; convolutions have biases only where no BatchNorm follows; dropout
    in the decoders of the inner levels (levels
    4 .. depth - 2, three of them at depth 8). The output is raw (pix2pix ends in tanh;
    musicpairs reads G's output through a sigmoid, :func:`musicpairs.model.rolls.
    probabilities`). With ``depth=8``, ``ngf=64`` and 3 channels in and out it is
    pix2pix's ``unet_256`` (54.4 M parameters).

    Args:
        in_channels: Source planes (2 per channel: onset, frame).
        out_channels: Target planes.
        ngf: Filters of the outermost level.
        depth: Levels; the input's height and width must be multiples of ``2**depth``.
        norm: ``"batch"`` or ``"instance"``.
        dropout: Dropout probability of the inner decoder blocks (0 for none).
        max_filters: The most filters any level has (None: ``8 * ngf``, pix2pix's cap).
            A lower cap thins only the small inner levels: most of the parameters, a
            fraction of the work.

    Shapes: input (B, in_channels, H, W) -> output (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, *, ngf: int = 64,
                 depth: int = 8, norm: str = "batch", dropout: float = 0.5,
                 max_filters: int | None = None):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        bias = norm == "instance"  # BatchNorm has its own shift
        cap = 8 * ngf if max_filters is None else max_filters
        if cap < ngf:
            raise ValueError(f"max_filters ({cap}) must be >= ngf ({ngf})")
        width = [min(ngf * 2**i, cap) for i in range(depth)]
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        for i in range(depth):
            outer = in_channels if i == 0 else width[i - 1]
            innermost = i == depth - 1
            down: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, inplace=True)]
            down.append(nn.Conv2d(outer, width[i], 4, 2, 1, bias=bias))
            if 0 < i < depth - 1:
                down.append(norm_layer(norm, width[i]))
            self.down.append(nn.Sequential(*down))

            up_in = width[i] if innermost else 2 * width[i]  # the skip doubles it
            if i == 0:
                up = [nn.ReLU(inplace=True),
                      nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1)]
            else:
                up = [nn.ReLU(inplace=True),
                      nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias),
                      norm_layer(norm, outer)]
                if dropout and 4 <= i <= depth - 2:
                    up.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*up))

    def live_taps(self, height: int, width: int) -> dict[str, tuple[int, int, int, int]]:
        """For an input of ``height`` x ``width``: each convolution weight (by state-dict
        name) with kernel taps that never meet a real cell, and the rows and columns
        ``(h0, h1, w0, w1)`` of its kernel that do. Where a level halves a side of 2 to 1
        (and back up), half the kernel's taps on that side only ever read zero padding
        or write outside the output: at this size the weights there do nothing, and
        zeroing them changes no output."""
        out = {}
        for i in range(self.depth):
            for name, block, transposed in ((f"down.{i}", self.down[i], False),
                                            (f"up.{i}", self.up[i], True)):
                k, conv = next((k, m) for k, m in enumerate(block)
                               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
                big, small = (height >> i, width >> i), (height >> (i + 1), width >> (i + 1))
                n_in, n_out = (small, big) if transposed else (big, small)
                taps = tuple(t for d in (0, 1) for t in _live(
                    n_in[d], n_out[d], transposed, conv.kernel_size[d], conv.stride[d],
                    conv.padding[d]))
                if taps != (0, conv.kernel_size[0], 0, conv.kernel_size[1]):
                    out[f"{name}.{k}.weight"] = taps
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2**self.depth
        if x.shape[-2] % side or x.shape[-1] % side:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of "
                             f"{side} (2**depth) on both sides")
        skips = []
        h = x  # (B, in, H, W)
        for down in self.down:
            # The next level's LeakyReLU works in place, so a kept skip ends up activated:
            # the decoder sees LeakyReLU(encoder output), as in pix2pix.
            h = down(h)
            skips.append(h)  # level i: (B, width[i], H / 2**(i+1), W / 2**(i+1))
        for i in range(self.depth - 1, -1, -1):
            if i < self.depth - 1:
                h = torch.cat([skips[i], h], dim=1)
            h = self.up[i](h)
        return h  # (B, out, H, W)
