"""Keeping the content picture's colours (Gatys et al., "Preserving Color in Neural
Artistic Style Transfer", 2016): transfer luminance only, or recolour the style first."""

from __future__ import annotations

import torch

# ITU-R BT.601 luma weights (the Y of YCbCr/YIQ).
LUMA = (0.299, 0.587, 0.114)
COLOR_MODES = ("luminance", "histogram")


def luminance(image: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` RGB -> ``[N, 1, H, W]`` luma."""
    weights = image.new_tensor(LUMA).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def gray_like(luma: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Luma with the mean and spread of ``reference``'s luma, as a 3-channel gray picture.

    Matching the statistics keeps the style's contrast pattern without dragging the
    result's overall brightness towards the painting's.
    """
    ref = luminance(reference)
    scaled = (luma - luma.mean()) / luma.std().clamp_min(1e-6) * ref.std() + ref.mean()
    return scaled.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_chroma_of(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luma with the content's chroma (Cb, Cr): the content's colours come back.

    ``content`` must have the result's size.
    """
    y = luminance(result)
    chroma = content - luminance(content)  # RGB minus Y is a linear function of (Cb, Cr)
    return (y + chroma).clamp(0, 1)


def match_color_statistics(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour ``source`` so that its pixels' mean and covariance equal ``target``'s.

    The linear map uses symmetric matrix square roots (the "image analogies" variant in
    Gatys et al.), which keeps hues stable rather than rotating them. Both are
    ``[1, 3, H, W]`` in ``[0, 1]``; their sizes may differ.
    """
    src = source.reshape(3, -1).double()
    tgt = target.reshape(3, -1).double()
    mu_s, mu_t = src.mean(1, keepdim=True), tgt.mean(1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64) * 1e-5
    cov_s = torch.cov(src) + eye
    cov_t = torch.cov(tgt) + eye
    transform = _sqrtm(cov_t) @ torch.linalg.inv(_sqrtm(cov_s))
    out = transform @ (src - mu_s) + mu_t
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
