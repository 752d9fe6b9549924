"""musicnn (Pons & Serra, 2019): a musically motivated CNN music tagger, ported from TensorFlow.

The network sees 3 s patches of a ``log10(1 + 10000 * mel)`` spectrogram (16 kHz, n_fft 512, hop 256,
96 Slaney mel bands, 187 frames) and scores 50 tags with sigmoids:

- **front end**: BN on the input; timbral convolutions (time 7 x mel 38 and 7 x 67, 204 filters, time
  padded 3 + 3, valid over mel) and temporal convolutions (128 x 1, 64 x 1, 32 x 1, 51 filters,
  TensorFlow "same" padding); each conv -> ReLU -> BN -> max over mel; 561 channels concatenated.
- **mid-end**: three 1-D convolutions over time (kernel 7, 64 filters, each -> ReLU -> BN), the second
  and third residual; the front end and all three outputs are concatenated (753 channels).
- **back-end**: max and mean over time, interleaved ``[max0, mean0, max1, …]`` (1506) -> BN -> dense
  200 -> ReLU -> BN -> dense to the tag logits. Every BN has eps 1e-3 (TensorFlow's default).

``networks > 1`` runs several such networks (e.g. the MSD and MTT checkpoints) side by side on the same
patches; ``outputs`` then says which of their logits form each output label, merged by ``max`` (the
same as the max of their sigmoid scores, since the sigmoid is monotonic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acousticsense.config import check

__all__ = ["MusicnnConfig", "Musicnn", "MusicnnNetwork"]


@dataclass(frozen=True)
class MusicnnConfig:
    """musicnn's exact hyper-parameters (the defaults are those of the released MSD/MTT models)."""

    family: ClassVar[str] = "musicnn"

    n_mels: int = 96
    window_frames: int = 187
    timbral_kernels: tuple[tuple[int, int], ...] = ((7, 38), (7, 67))  # (time, mel)
    timbral_filters: int = 204
    temporal_kernels: tuple[int, ...] = (128, 64, 32)  # time
    temporal_filters: int = 51
    midend_filters: int = 64
    midend_kernel: int = 7
    backend_units: int = 200
    tags: int = 50  # outputs of each network
    networks: int = 1
    # Per output label, indices into the networks' concatenated logits, merged by max; () = all, in order.
    outputs: tuple[tuple[int, ...], ...] = ()
    bn_eps: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "timbral_kernels", tuple(tuple(k) for k in self.timbral_kernels))
        object.__setattr__(self, "temporal_kernels", tuple(self.temporal_kernels))
        object.__setattr__(self, "outputs", tuple(tuple(o) for o in self.outputs))
        check(all(k[1] <= self.n_mels for k in self.timbral_kernels), "timbral kernels must fit n_mels")
        check(self.networks >= 1 and self.tags >= 1, "networks and tags must be >= 1")
        total = self.networks * self.tags
        check(all(o and all(0 <= i < total for i in o) for o in self.outputs), f"outputs must index 0..{total - 1}")
        check(self.n_classes > 1, "a tagger needs at least two outputs")

    @property
    def n_classes(self) -> int:
        return len(self.outputs) if self.outputs else self.networks * self.tags

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(n_mels, window_frames)``: one patch."""
        return (self.n_mels, self.window_frames)

    @property
    def frontend_channels(self) -> int:
        return len(self.timbral_kernels) * self.timbral_filters + len(self.temporal_kernels) * self.temporal_filters


class _ConvReluBN(nn.Module):
    """conv -> ReLU -> BN, musicnn's order."""

    def __init__(self, conv: nn.Module, channels: int, eps: float) -> None:
        super().__init__()
        self.conv = conv
        self.bn = (
            nn.BatchNorm2d(channels, eps=eps) if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d(channels, eps=eps)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x)))

    def max_over_mel(self, x: Tensor) -> Tensor:
        """``max_mel(BN(ReLU(conv(x))))`` for ``x`` ``(batch, 1, time, mel)`` -> ``(batch, filters, time)``.

        In eval mode the bias, ReLU and BN are applied after the reduction: the bias and ReLU commute with
        a max, and BN is a per-channel affine map ``a * v + b``, whose max over mel is ``a * max + b`` where
        ``a >= 0`` and ``a * min + b`` where ``a < 0``. Same numbers, but the element-wise work shrinks from
        ``filters x time x mel`` to ``filters x time`` (most of the front end's time outside the convs).
        """
        if self.training:
            return self(x).amax(dim=3)
        bn = self.bn
        y = F.conv2d(x, self.conv.weight)
        low, high = torch.aminmax(y, dim=3)
        bias = self.conv.bias[:, None]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        pooled = torch.where(scale[:, None] >= 0, F.relu(high + bias), F.relu(low + bias))
        return pooled * scale[:, None] + shift[:, None]


class MusicnnNetwork(nn.Module):
    """One musicnn network: ``(batch, n_mels, frames)`` patches -> ``(batch, tags)`` logits."""

    def __init__(self, config: MusicnnConfig) -> None:
        super().__init__()
        eps = config.bn_eps
        self.input_bn = nn.BatchNorm2d(1, eps=eps)
        self.timbral = nn.ModuleList(
            _ConvReluBN(nn.Conv2d(1, config.timbral_filters, kernel), config.timbral_filters, eps)
            for kernel in config.timbral_kernels
        )
        self.temporal = nn.ModuleList(
            _ConvReluBN(nn.Conv2d(1, config.temporal_filters, (kernel, 1)), config.temporal_filters, eps)
            for kernel in config.temporal_kernels
        )
        channels = config.frontend_channels
        k = config.midend_kernel
        self.midend = nn.ModuleList(
            _ConvReluBN(nn.Conv1d(c_in, config.midend_filters, k), config.midend_filters, eps)
            for c_in in (channels, config.midend_filters, config.midend_filters)
        )
        dense_in = 2 * (channels + 3 * config.midend_filters)
        self.pool_bn = nn.BatchNorm1d(dense_in, eps=eps)
        self.dense = nn.Linear(dense_in, config.backend_units)
        self.dense_bn = nn.BatchNorm1d(config.backend_units, eps=eps)
        self.output = nn.Linear(config.backend_units, config.tags)
        self.config = config

    def forward(self, patches: Tensor) -> Tensor:
        """Args: patches: ``(batch, n_mels, frames)``, ``log10(1 + 10000 * mel)``.

        Returns:
            ``(batch, tags)`` logits (apply a sigmoid for tag scores).
        """
        x = self.input_bn(patches.transpose(1, 2).unsqueeze(1))  # (batch, 1, frames, mel), as TF's NHWC image
        features = []
        for block in self.timbral:
            pad = block.conv.kernel_size[0] - 1
            padded = F.pad(x, (0, 0, pad // 2, pad - pad // 2))  # time only; valid over mel
            features.append(block.max_over_mel(padded))  # (batch, filters, frames)
        for block in self.temporal:
            pad = block.conv.kernel_size[0] - 1  # TensorFlow "same": the extra frame goes after
            padded = F.pad(x, (0, 0, pad // 2, pad - pad // 2))
            features.append(block.max_over_mel(padded))
        front = torch.cat(features, dim=1)  # (batch, 561, frames)
        layers = [front]
        h = front
        for i, block in enumerate(self.midend):
            pad = block.conv.kernel_size[0] - 1
            out = block(F.pad(h, (pad // 2, pad - pad // 2)))
            h = out if i == 0 else out + h
            layers.append(h)
        mid = torch.cat(layers, dim=1)  # (batch, 753, frames)
        pooled = torch.stack((mid.amax(dim=2), mid.mean(dim=2)), dim=2).flatten(1)  # [max0, mean0, max1, …]
        hidden = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.output(hidden)


class Musicnn(nn.Module):
    """One or more :class:`MusicnnNetwork` on the same patches; outputs merged as ``config.outputs`` says.

    Args:
        config: the hyper-parameters; ``config.networks`` networks, ``config.n_classes`` outputs.
    """

    def __init__(self, config: MusicnnConfig) -> None:
        super().__init__()
        self.config = config
        self.networks = nn.ModuleList(MusicnnNetwork(config) for _ in range(config.networks))
        if config.outputs:
            width = max(len(o) for o in config.outputs)
            index = [list(o) + [o[0]] * (width - len(o)) for o in config.outputs]  # pad with a member: max unchanged
            self.register_buffer("merge_index", torch.tensor(index, dtype=torch.long), persistent=False)
        else:
            self.merge_index = None

    def forward(self, windows: Tensor) -> Tensor:
        """Args: windows: ``(batch, n_mels, window_frames)`` compressed log-mel patches.

        Returns:
            ``(batch, n_classes)`` logits.
        """
        logits = torch.cat([net(windows) for net in self.networks], dim=1)
        if self.merge_index is None:
            return logits
        return logits[:, self.merge_index].amax(dim=2)
