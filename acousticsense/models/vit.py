"""ViT audio classifier over mel-spectrogram windows (AST-style patch embedding): the ``vit`` family.

The mel image ``(n_mels, window_frames)`` is cut into non-overlapping ``patch_size`` squares, each
projected to ``dim`` by a strided convolution; a learned position embedding is added, pre-norm
transformer blocks with ``scaled_dot_product_attention`` follow, and the mean of the patch tokens
goes through a linear head to one logit per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acousticsense.config import GENRES, FeatureConfig, check
from acousticsense.errors import ConfigError

__all__ = ["ViTConfig", "WindowClassifier", "MODEL_PRESETS", "model_config_for"]


@dataclass(frozen=True)
class ViTConfig:
    """Dimensions of the ViT audio classifier (AST-style patches over the mel image)."""

    family: ClassVar[str] = "vit"

    n_mels: int = 128
    window_frames: int = 224
    patch_size: int = 16
    dim: int = 64
    depth: int = 4
    heads: int = 2
    mlp_ratio: float = 4.0
    n_classes: int = len(GENRES)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check(self.n_mels % self.patch_size == 0, "n_mels must be divisible by patch_size")
        check(self.window_frames % self.patch_size == 0, "window_frames must be divisible by patch_size")
        check(self.dim % self.heads == 0, "dim must be divisible by heads")
        check(self.depth > 0 and self.n_classes > 1, "depth must be positive and n_classes > 1")

    @property
    def n_patches(self) -> int:
        return (self.n_mels // self.patch_size) * (self.window_frames // self.patch_size)

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(n_mels, window_frames)``: one window."""
        return (self.n_mels, self.window_frames)


# Presets take the feature geometry (n_mels, window_frames) from the FeatureConfig they are paired with.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU-friendly: all windows of a 30 s excerpt cost less than featurizing it on one core.
    "tiny": dict(patch_size=16, dim=64, depth=4, heads=2, mlp_ratio=4.0),
    "small": dict(patch_size=16, dim=192, depth=12, heads=3, mlp_ratio=4.0),  # ViT-Ti sizes
    "base": dict(patch_size=16, dim=768, depth=12, heads=12, mlp_ratio=4.0),  # ViT-B/16 sizes
}


def model_config_for(preset: str, features: FeatureConfig, n_classes: int) -> ViTConfig:
    """The :class:`ViTConfig` of a named preset (``tiny``, ``small``, ``base``) for a feature geometry."""
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}")
    return ViTConfig(
        n_mels=features.n_mels,
        window_frames=features.window_frames,
        n_classes=n_classes,
        **MODEL_PRESETS[preset],
    )


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class WindowClassifier(nn.Module):
    """Classifies model-sized log-mel windows.

    Args:
        config: model dimensions; ``config.n_mels`` x ``config.window_frames`` is the input image.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        p = config.patch_size
        self.patch_embed = nn.Conv2d(1, config.dim, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.n_patches, config.dim))
        self.blocks = nn.ModuleList(
            _Block(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.n_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    def forward(self, windows: Tensor) -> Tensor:
        """Args: windows: ``(batch, n_mels, window_frames)``, normalised log-mel.

        Returns:
            ``(batch, n_classes)`` logits (before temperature and softmax).
        """
        x = self.patch_embed(windows.unsqueeze(1))  # (batch, dim, n_mels/p, frames/p)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed  # (batch, n_patches, dim)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
