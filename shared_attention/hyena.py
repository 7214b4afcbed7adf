"""The Hyena operator (Poli et al., 2023) as used by HyenaDNA (Nguyen et al., 2023).

Order-``N`` Hyena on ``u ∈ R^{L×D}`` (HyenaDNA uses ``N = 2``):

    x₀, x₁, …, x_{N-1}, v = split(ShortConv(W_in u))        depthwise causal conv, kernel 3
    for i = N-1, …, 1:   v ← h_i ∗ (x_i ⊙ v) + β_i ⊙ (x_i ⊙ v)     long causal conv + skip
    y = W_out (x₀ ⊙ v)

The long filters ``h_i ∈ R^{L×D}`` are implicit: positional features ``z_t`` (``t`` and sin/cos bands,
optionally sin/cos of fixed periods in tokens, e.g. a codon's 3) go through an MLP with ``sin(ω·)``
activations and are multiplied by an exponential decay window ``exp(-|δ_c| t)`` (one rate per channel).
The convolution is computed by FFT in fp32, ``h ∗ u = irfft(rfft(u, 2L) · rfft(h, 2L))[:L]``: causal and
``O(L log L)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_tensor


def causal_depthwise_conv(z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``y_t = b + Σ_{j<k} w_j z_{t-(k-1)+j}`` (zero before the start) on ``z [b, C, L]`` with
    ``weight [C, 1, k]`` (a causal ``nn.Conv1d(C, C, k, groups=C)``'s): ``k`` multiply-adds of shifted
    views, where oneDNN's depthwise conv is 2-3× slower on long sequences."""
    k = weight.shape[-1]
    taps = weight.view(-1, k, 1)  # [C, k, 1]
    y = z * taps[:, k - 1] if bias is None else torch.addcmul(bias.view(-1, 1), z, taps[:, k - 1])
    for j in range(k - 1):
        shift = k - 1 - j
        if shift < z.shape[-1]:
            y[..., shift:].addcmul_(z[..., :-shift], taps[:, j])
    return y


def filter_spectrum(filt: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``rfft(h, 2L)`` of filter taps ``[..., L]``: what :func:`fft_long_conv` multiplies by."""
    return torch.fft.rfft(filt.to(torch.promote_types(filt.dtype, dtype)), n=2 * filt.shape[-1])


def fft_long_conv(
    u: Tensor, filt: Tensor | None, skip: Tensor | None = None, *, spectrum: Tensor | None = None
) -> Tensor:
    """Causal long convolution ``y_t = Σ_{s≤t} h_s u_{t-s} + β u_t`` by FFT (computed in fp32 or wider).

    Args:
        u: ``[b, D, L]``.
        filt: ``[D, L]`` (or ``[b, D, L]``) filter taps, ``h_0`` first.
        skip: ``[D]`` skip weights ``β`` (None: no skip term).
        spectrum: instead of ``filt``, its :func:`filter_spectrum` (``[D, L + 1]`` complex), computed once
            when the same filter convolves many inputs (inference).
    Returns:
        ``[b, D, L]`` in ``u``'s dtype.
    """
    check_tensor("u", u, 3)
    length = u.shape[-1]
    dtype = torch.promote_types(u.dtype, torch.float32)
    n_fft = 2 * length
    if spectrum is None:
        check_tensor("filt", filt, (2, 3))
        if filt.shape[-1] != length or filt.shape[-2] != u.shape[1]:
            raise ValueError(f"filt must be [{u.shape[1]}, {length}], got {tuple(filt.shape)}")
        spectrum = filter_spectrum(filt, dtype)
    elif spectrum.shape[-1] != length + 1 or spectrum.shape[-2] != u.shape[1]:
        raise ValueError(f"spectrum must be [{u.shape[1]}, {length + 1}], got {tuple(spectrum.shape)}")
    u_f = torch.fft.rfft(u.to(dtype), n=n_fft)
    y = torch.fft.irfft(u_f * spectrum, n=n_fft)[..., :length]
    if skip is not None:
        if tuple(skip.shape) != (u.shape[1],):
            raise ValueError(f"skip must have shape [{u.shape[1]}], got {tuple(skip.shape)}")
        y = torch.addcmul(y, u.to(dtype), skip.to(dtype).unsqueeze(-1))
    return y.to(u.dtype)


class Sin(nn.Module):
    """``sin(ω ⊙ x)`` with a (trainable) frequency per feature, initialised to ``w``."""

    def __init__(self, dim: int, w: float = 10.0, trainable: bool = True):
        super().__init__()
        freq = w * torch.ones(1, dim)
        self.freq = nn.Parameter(freq) if trainable else nn.Buffer(freq)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaPositionalFeatures(nn.Module):
    """``z_t = [t, Re e^{-i f w_t}, Im e^{-i f w_t}, cos(2π k/p), sin(2π k/p) for p in periods]`` for ``t``
    on a grid of ``l_max`` points in [0, 1] (``k`` the token offset). The bands reach at most
    ``(emb_dim - 1) / 2`` cycles over ``l_max`` tokens; a period (3: the codon) gives filters a rhythm the
    bands cannot reach. ``dim`` = ``emb_dim + 2 · len(periods)``."""

    def __init__(self, emb_dim: int, l_max: int, periods: tuple[int, ...] = ()):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (t plus sin/cos bands), got {emb_dim}")
        if any(int(q) < 2 for q in periods):
            raise ValueError(f"periods must be >= 2 tokens, got {tuple(periods)}")
        t = torch.linspace(0, 1, l_max).view(1, l_max, 1)
        bands = (emb_dim - 1) // 2
        w = 2 * math.pi * torch.linspace(0, l_max - 1, l_max).view(1, l_max, 1) / l_max
        f = torch.linspace(1e-4, bands - 1, bands).view(1, 1, bands)
        z = torch.exp(-1j * f * w)
        k = torch.arange(l_max, dtype=torch.float64).view(1, l_max, 1)
        rhythm = [torch.cat([torch.cos(a), torch.sin(a)], dim=-1) for a in (2 * math.pi * k / int(q) for q in periods)]
        self.register_buffer("z", torch.cat([t, z.real, z.imag, *rhythm], dim=-1).float())
        self.dim = self.z.shape[-1]
        self.register_buffer("t", t)

    def forward(self, length: int) -> tuple[Tensor, Tensor]:
        return self.z[:, :length], self.t[:, :length]


class ExponentialModulation(nn.Module):
    """Decay window ``h ← h · (exp(-t |δ_c|) + shift)``, rates spread so the filters reach ``target``
    between ``fast_decay_pct`` and ``slow_decay_pct`` of the sequence."""

    def __init__(
        self,
        dim: int,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.0,
    ):
        super().__init__()
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, dim).view(1, 1, dim))
        self.shift = shift

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return h * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    """Implicit long filter: positional features → MLP with Sin activations → decay window.

    Produces ``[L, channels]`` taps for any ``L <= l_max`` and holds the skip weights ``β``.
    """

    def __init__(
        self,
        channels: int,
        l_max: int,
        *,
        emb_dim: int = 5,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        activation_freq: float = 10.0,
        modulation_shift: float = 0.0,
        periods: tuple[int, ...] = (),
    ):
        super().__init__()
        self.channels, self.l_max = channels, l_max
        self.positions = HyenaPositionalFeatures(emb_dim, l_max, periods)
        act = Sin(filter_order, activation_freq)
        layers: list[nn.Module] = [nn.Linear(self.positions.dim, filter_order), act]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(filter_order, filter_order), act]  # one Sin shared, as published
        layers.append(nn.Linear(filter_order, channels, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(channels, shift=modulation_shift)
        self.skip = nn.Parameter(torch.randn(channels))

    def forward(self, length: int) -> Tensor:
        """Filter taps ``[channels, length]``."""
        if not 1 <= length <= self.l_max:
            raise ValueError(f"length must be in [1, l_max={self.l_max}], got {length}")
        z, t = self.positions(length)
        h = self.modulation(t, self.mlp(z))  # [1, L, channels]
        return h[0].transpose(0, 1)


class HyenaOperator(nn.Module):
    """Hyena operator of order ``N`` on ``u [b, L, d_model]`` (``L <= l_max``).

    Args:
        d_model: width.
        l_max: longest sequence the implicit filters cover.
        order: ``N >= 2`` (HyenaDNA: 2).
        filter_order: width of the filter MLP (HyenaDNA: 64).
        short_filter_order: kernel of the causal depthwise conv (3).
        emb_dim, num_inner_mlps, activation_freq, modulation_shift: filter settings (HyenaDNA: 5, 2, 10).
        filter_periods: extra positional features of these periods in tokens (HyenaDNA: none).
        dropout: dropout on the gated values.
    """

    def __init__(
        self,
        d_model: int,
        l_max: int,
        *,
        order: int = 2,
        filter_order: int = 64,
        short_filter_order: int = 3,
        emb_dim: int = 5,
        num_inner_mlps: int = 2,
        activation_freq: float = 10.0,
        modulation_shift: float = 0.0,
        filter_periods: tuple[int, ...] = (),
        dropout: float = 0.0,
    ):
        super().__init__()
        if order < 2:
            raise ValueError(f"order must be >= 2, got {order}")
        if l_max < 1:
            raise ValueError(f"l_max must be >= 1, got {l_max}")
        self.d_model, self.l_max, self.order = d_model, l_max, order
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_filter = nn.Conv1d(width, width, short_filter_order, padding=short_filter_order - 1, groups=width)
        self.filter = HyenaFilter(
            d_model * (order - 1),
            l_max,
            emb_dim=emb_dim,
            filter_order=filter_order,
            num_inner_mlps=num_inner_mlps,
            activation_freq=activation_freq,
            modulation_shift=modulation_shift,
            periods=tuple(filter_periods),
        )
        self.dropout = nn.Dropout(dropout)
        self._spectra: dict[tuple, Tensor] = {}  # inference cache of filter_spectra

    def forward(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        """``u [b, L, d_model]`` → ``[b, L, d_model]``; ``mask`` (bool ``[b, L]``, True = real token)
        zeroes padded positions before any mixing, so outputs at real positions ignore padding."""
        check_tensor("u", u, 3)
        b, length, d = u.shape
        if d != self.d_model:
            raise ValueError(f"u must have last dim {self.d_model}, got {d}")
        if not 1 <= length <= self.l_max:
            raise ValueError(f"sequence length must be in [1, l_max={self.l_max}], got {length}")
        keep = None
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != (b, length):
                raise ValueError(f"mask must be bool of shape {(b, length)}, got {mask.dtype} {tuple(mask.shape)}")
            if not bool(mask.all()):  # nothing padded: no masking passes over [b, 3D, L]
                keep = mask.unsqueeze(1).to(u.dtype)  # [b, 1, L]
        # channels first, the FFT's layout, straight from the projection's GEMM (no transposed copy)
        w_in = self.in_proj.weight.expand(b, -1, -1)
        z = torch.baddbmm(self.in_proj.bias.view(1, -1, 1), w_in, u.transpose(1, 2))  # [b, (order+1)·D, L]
        if keep is not None:  # padded inputs must not reach real positions through the short conv...
            z = z * keep
        z = causal_depthwise_conv(z, self.short_filter.weight, self.short_filter.bias)
        if keep is not None:  # ...nor the short conv's bias at padded positions through the long conv
            z = z * keep
        *gates, v = z.split(self.d_model, dim=1)  # [b, D, L] each
        spectra = self.filter_spectra(length, u.dtype)
        skips = self.filter.skip.view(self.order - 1, self.d_model)
        for i, gate in enumerate(reversed(gates[1:])):
            v = self.dropout(v * gate)
            v = fft_long_conv(v, None, skips[i], spectrum=spectra[i])
        y = (v * gates[0]).transpose(1, 2)  # [b, L, D], a view
        w_out = self.out_proj.weight.t().expand(b, -1, -1)
        return torch.baddbmm(self.out_proj.bias.view(1, 1, -1), y, w_out)

    def filter_spectra(self, length: int, dtype: torch.dtype) -> Tensor:
        """``[order - 1, d_model, length + 1]`` spectra of the implicit filters at ``length``. The filters
        depend on the length and the weights only, so without autograd (inference) they are computed
        once per length and kept until a weight changes (any in-place update bumps its version)."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.filter.parameters()):
            taps = self.filter(length).view(self.order - 1, self.d_model, length)
            return filter_spectrum(taps, dtype)
        params = list(self.filter.parameters())
        key = (length, dtype, params[0].device, tuple(p._version for p in params), tuple(p.data_ptr() for p in params))
        if key not in self._spectra:
            self._spectra.clear()  # one length at a time (at 1M tokens one entry is 1 GB)
            taps = self.filter(length).view(self.order - 1, self.d_model, length)
            self._spectra[key] = filter_spectrum(taps, dtype)
        return self._spectra[key]
