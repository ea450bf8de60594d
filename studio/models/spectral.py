"""Studio's STFT autoencoder: encoder and decoder that work at the latent frame rate.

One latent frame is one STFT frame (hop = the autoencoder's downsampling ratio). The encoder reads
each frame's complex spectrum; the decoder predicts each frame's log-magnitude and phase, and an
inverse STFT (overlap-add of Hann-windowed frames) makes the waveform. Nothing upsamples at audio
rate: a tone at any frequency is a partial whose phase advances from one frame to the next, so its
pitch is as exact as that advance, not snapped to a grid of the frame rate's multiples. The trunk
on both sides is a stack of ConvNeXt blocks over frames (the Vocos design, Siuzdak 2023).

Framing: for T = K · hop samples there are exactly K frames; frame k is centred on the middle of
hop block k, so the signal is padded by (n_fft − hop) / 2 on each side before analysis and the
same amount is cut off after synthesis.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from studio.models.config import StftConfig
from studio.models.dit import Float32LayerNorm

# Power-law compression of the encoder's complex input: it keeps a quiet partial's phase visible
# beside a loud one without taking a log of zero.
COMPRESSION = 0.3
INITIAL_LOG_MAGNITUDE = -5.0  # about −45 dB of white noise at full scale (frame_spectra's scale)
MAX_LOG_MAGNITUDE = 4.6  # exp(4.6) ≈ 100: five times a full-scale sine's peak, the most a bin may be
INITIAL_PARTIAL_LEVEL = -25.0  # a partial head's log levels at the start, about −220 dB: nothing heard


# a partial head's output: each band's partial's position in bins and its log level
Partials = tuple[torch.Tensor, torch.Tensor]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over frames, LayerNorm, pointwise MLP, scaled residual; [B, T, C] in and out."""

    def __init__(self, width: int, kernel_size: int, mlp_ratio: int = 3):
        super().__init__()
        self.mix = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.norm = Float32LayerNorm(width, eps=1e-6)
        self.up = nn.Linear(width, mlp_ratio * width)
        self.down = nn.Linear(mlp_ratio * width, width)
        # Small residual scales keep a deep stack near the identity at the start (ConvNeXt).
        self.gain = nn.Parameter(torch.full((width,), 1.0 / 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mix(x.transpose(1, 2)).transpose(1, 2)
        h = self.down(F.gelu(self.up(self.norm(h))))
        return x + self.gain * h


class FrameTrunk(nn.Module):
    """Linear in, ConvNeXt blocks, LayerNorm, linear out: [B, T, in] -> [B, T, out]."""

    def __init__(self, in_features: int, width: int, depth: int, kernel_size: int, out_features: int):
        super().__init__()
        self.proj_in = nn.Linear(in_features, width)
        self.norm_in = Float32LayerNorm(width, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(width, kernel_size) for _ in range(depth))
        self.norm_out = Float32LayerNorm(width, eps=1e-6)
        self.proj_out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.proj_in(x))
        for block in self.blocks:
            x = block(x)
        return self.proj_out(self.norm_out(x))


class BandHead(nn.Module):
    """A second output layer beside a trunk's linear one, band by band: [B, K, width] -> [B, K,
    channels · outputs · bins], laid out as that linear layer's output, to which it is added.

    A linear output layer writes every frame's log magnitudes as a mix of `width` fixed spectral
    shapes, so no frame's spectrum leaves a `width`-dimensional subspace: the best the decoder of
    studio-mini-stft (320 wide) could write of a string section or a piano chord, given the
    original's own phases, loses the harmonics to a haze, as its round trips do. Here each of
    `bands` equal stretches of the spectrum gets `band_width` features of its own, a GELU of the
    trunk's output, and a linear layer from them to its bins: the spectrum as a whole then spans
    bands × band_width dimensions, at about the cost of the linear layer. Its output layer starts at
    zero, so a trained decoder it is added to starts exactly where it was."""

    def __init__(self, width: int, channels: int, outputs: int, bins: int, bands: int, band_width: int):
        super().__init__()
        self.channels, self.outputs, self.bands = channels, outputs, bands
        self.band_bins = bins // bands
        self.up = nn.Linear(width, bands * band_width)
        self.out = nn.Parameter(torch.zeros(bands, band_width, channels * outputs * self.band_bins))
        self.bias = nn.Parameter(torch.zeros(bands, 1, channels * outputs * self.band_bins))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, frames = hidden.shape[:2]
        features = F.gelu(self.up(hidden)).reshape(batch * frames, self.bands, -1).transpose(0, 1)
        out = torch.baddbmm(self.bias, features, self.out)  # [bands, B · K, C · outputs · band bins]
        out = out.reshape(self.bands, batch, frames, self.channels, self.outputs, self.band_bins)
        return out.permute(1, 2, 3, 4, 0, 5).reshape(batch, frames, -1)


def hann_lobe(offset: torch.Tensor) -> torch.Tensor:
    """The magnitude a Hann-windowed sine leaves in a bin `offset` bins (fractional) from its own
    frequency, relative to its peak: sinc(d) / (1 − d²), which is 1/2 one bin away and 0 from two
    bins on (the side lobes, 31 dB down and lower, are left out)."""
    d = offset.abs()
    sinc = torch.sinc(d)
    # at d = 1 the quotient is 0/0; its limit there is 1/2
    near_one = (d - 1).abs() < 1e-3
    lobe = torch.where(near_one, torch.full_like(d, 0.5), sinc / torch.where(near_one, 1.0, 1 - d * d))
    return torch.where(d < 2, lobe, torch.zeros_like(d))


class PartialHead(nn.Module):
    """A third output beside a decoder's log magnitudes: for each of `bands` equal stretches of the
    spectrum, the position (between bins) and log level of its loudest partial, which `write` adds
    to the magnitudes as the main lobe a Hann-windowed sine of that frequency leaves.

    Frames 512 samples apart pin a partial by its phase only up to whole multiples of 86 Hz, so a
    partial comes back at its pitch only if its magnitude is written within ±43 Hz (two bins) of
    it; the phase does the rest. A layer that writes each bin's log magnitude on its own learns
    that bin by bin, and what the decoder of studio-mini-stft learned wrote every sine above 1.3
    kHz at one of a few fixed frequencies, while the phasors it wrote stood longest round the
    sine's own bin. So the position is read from the lengths of the phasors the decoder writes
    in the band and two bins either side, by one small MLP that every band shares: a score per bin,
    and the band's position the softmax-weighted mean of its bins. What a band learns to read,
    every band reads. (Not from its log magnitudes: a reader given them too followed them to the
    fixed frequencies. Nor by a convolution along all the bins: one of 16 channels doubled the
    decode's time, a score per bin from 16 features; an MLP per band window needs a 16th of the
    nonlinearities.) The level comes from the trunk's output through `hidden` features.
    Both are regressed on the original's loudest partial (`losses.partial_placement_loss`). What
    it reads, phasors and trunk output, is detached: it learns to read the decoder, not to change
    what the decoder writes. (A run on the corpus with the trunk's output attached, the placement
    loss outweighing the decoder's own three to one, moved the decoder's own loudest bin of a band
    off the original's partial, from 45 to 39 in 100 within two bins in 3,000 steps, and its round
    trips' category ceiling from 0.688 to 0.651 in 1,500.) The decoder's reconstruction losses
    still reach the trunk through what the head writes. Its levels start at −25 nats (about −220
    dB), so a trained decoder it is added to decodes as before."""

    def __init__(self, width: int, channels: int, bins: int, bands: int, hidden: int, reader: int = 32):
        super().__init__()
        self.channels, self.bands, self.band_bins = channels, bands, bins // bands
        self.up = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, channels * bands)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, INITIAL_PARTIAL_LEVEL)
        # a band's bins and two either side, as far as a partial's lobe reaches, in; a score per bin out
        self.read = nn.Sequential(
            nn.Linear(self.band_bins + 4, reader), nn.GELU(), nn.Linear(reader, self.band_bins)
        )

    def forward(
        self, hidden: torch.Tensor, phasor_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunk's output [B, K, width] and the lengths of the phasors the decoder writes [B,
        channels, K, bins] -> (positions, log levels), each [B, channels, K, bands]; a position
        counts bins from the first above 0 Hz and stays inside its band."""
        batch, frames = hidden.shape[:2]
        # computed in the head's dtype, returned in float32 for the float32 spectra they join
        levels = self.out(F.gelu(self.up(hidden.detach().to(self.up.weight.dtype)))).float()
        levels = levels.reshape(batch, frames, self.channels, self.bands).transpose(1, 2)
        windows = F.pad(phasor_lengths.detach(), (2, 2)).unfold(-1, self.band_bins + 4, self.band_bins)
        scores = self.read(windows.to(self.read[0].weight.dtype)).float()
        offsets = torch.arange(self.band_bins, device=scores.device, dtype=scores.dtype)
        starts = torch.arange(self.bands, device=scores.device) * self.band_bins
        return starts + (scores.softmax(-1) * offsets).sum(-1), levels

    def write(
        self, log_magnitudes: torch.Tensor, positions: torch.Tensor, levels: torch.Tensor
    ) -> torch.Tensor:
        """Log magnitudes [B, C, K, bins] with each band's partial added, in linear magnitude."""
        bins = log_magnitudes.shape[-1]
        # the four bins less than two from the position, all a main lobe reaches, [..., bands, 4]
        reach = positions.detach().floor().unsqueeze(-1) + torch.arange(-1, 3, device=positions.device)
        lobes = levels.unsqueeze(-1).exp() * hann_lobe(reach - positions.unsqueeze(-1))
        inside = (reach >= 0) & (reach < bins)
        added = torch.zeros_like(log_magnitudes).scatter_add_(
            -1, reach.long().clamp(0, bins - 1).flatten(-2), (lobes * inside).flatten(-2)
        )
        return torch.logaddexp(log_magnitudes, added.clamp_min(1e-30).log())


def _window(n_fft: int, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n_fft, device=like.device, dtype=torch.float32)


def frame_spectra(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """[B, C, K · hop] audio -> complex spectra [B, C, K, n_fft / 2 + 1], one frame per hop block.

    Scaled by the window's norm, so white noise of deviation σ has bins of magnitude about σ and a
    full-scale sine a peak of about 18: the decoder's log magnitudes live in a small range.
    """
    batch, channels, samples = audio.shape
    side = (n_fft - hop) // 2
    padded = F.pad(audio.float().reshape(batch * channels, samples), (side, side))
    window = _window(n_fft, audio)
    spectra = torch.stft(padded, n_fft, hop, window=window / window.norm(), center=False, return_complex=True)
    return spectra.transpose(1, 2).reshape(batch, channels, -1, n_fft // 2 + 1)


def _overlap(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add [N, K, r · hop] frames placed hop apart -> [N, (K + r − 1) · hop]: r shifted sums
    of hop-long pieces, several times quicker on a CPU than F.fold's general gather."""
    count, length = frames.shape[1], frames.shape[2]
    pieces = frames.reshape(frames.shape[0], count, length // hop, hop)
    out = frames.new_zeros(frames.shape[0], count + length // hop - 1, hop)
    for j in range(length // hop):
        out[:, j : j + count] += pieces[:, :, j]
    return out.flatten(1)


def overlap_add(spectra: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """The inverse of `frame_spectra`: [B, C, K, n_fft / 2 + 1] -> [B, C, K · hop] audio.

    Inverse FFT of each frame, Hann synthesis window, overlap-add, divided by the summed squared
    window (torch.istft's centre=False mode refuses the edge samples where few frames overlap). The
    padding keeps every returned sample where at least two frames overlap: at 4x overlap the
    envelope there is above 0.3, in the middle 1.5.
    """
    batch, channels, frames, _ = spectra.shape
    window = _window(n_fft, spectra)
    time_frames = torch.fft.irfft(spectra.reshape(batch * channels, frames, -1), n=n_fft, dim=-1)
    audio = _overlap(time_frames * (window * window.norm()), hop)
    envelope = _overlap(window.square().expand(1, frames, n_fft), hop)[0]
    side = (n_fft - hop) // 2
    audio = (audio / envelope.clamp_min(1e-8))[:, side : side + frames * hop]
    return audio.reshape(batch, channels, -1)


def spectral_features(spectra: torch.Tensor) -> torch.Tensor:
    """Complex [B, C, K, F] -> real [B, K, C · F · 3]: per bin the spectrum with its magnitude
    compressed to the power 0.3 and its phase kept, as real and imaginary parts, and that
    compressed magnitude itself. Silence is 0 throughout (a log magnitude would be a large constant
    in every quiet bin that drowns the rest). A partial is a pair of numbers that turns with its
    phase, which a linear layer passes on as it is, beside its level, which a linear layer could
    not get from the turning pair: without it the encoder has to learn, bin by bin, to measure
    the length of a turning vector, and bins that are seldom loud in training never learn."""
    magnitude = spectra.abs().clamp_min(1e-8)
    compressed = spectra * magnitude.pow(COMPRESSION - 1)
    features = torch.stack((compressed.real, compressed.imag, magnitude.pow(COMPRESSION)), dim=-1)
    return features.transpose(1, 2).flatten(2)  # [B, K, C, F, 3] -> [B, K, C · F · 3]


class StftEncoder(nn.Module):
    """Audio [B, channels, K · hop] -> posterior parameters [B, latent_dim, K] (mean, then scale)."""

    def __init__(self, config: StftConfig):
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop_length
        bins = config.n_fft // 2 + 1
        self.trunk = FrameTrunk(
            config.audio_channels * bins * 3,
            config.width,
            config.depth,
            config.kernel_size,
            config.latent_dim,
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = spectral_features(frame_spectra(audio, self.n_fft, self.hop))
        return self.trunk(features.to(self.trunk.proj_in.weight.dtype)).transpose(1, 2)


class StftDecoder(nn.Module):
    """Latents [B, latent_dim, K] -> audio [B, channels, K · hop].

    Per frame, channel and bin the trunk predicts a log magnitude and a phasor p, a 2-D vector: its
    angle is the phase and its length, up to 1, how sure the decoder is of that phase. Training
    regresses p onto the original's unit phasor (losses.phasor_loss), so p becomes the mean of the
    phases the latents leave plausible: length near 1 for a partial they pin down, well below it
    in the bins of a noise whose phases nothing in them says. With s = min(|p|, 1)^sureness_power,
    the phase written is that of s·p/|p| + √(1 − s²)·n, with n a white noise's STFT: exact where
    the decoder is sure, random where it is not. Written without the noise, a noise's bins would
    get much the same phases frame after frame, and it would buzz on multiples of the frame rate.
    The power (2 by default) keeps the part-sure bins of a noise (|p| about 0.2–0.5), whose
    leftover coherence writes lines at the bins' centre frequencies, from being written as if sure;
    a partial's |p| is about 1, which any power leaves alone.

    A phasor rather than an angle: the encoder hands a partial over as a pair of numbers that turns
    with its phase, which a linear layer passes on, where an angle would take a wrap-around that
    the trunk learns slowly. The decoder does not write the 0 Hz bin itself: it is set to the real
    part of the 1st bin, which makes every Hann-windowed frame add up to 0 (the window's spectrum
    is 1/2 at 0 Hz and −1/4 at ±1 bin), so no frame leaves an offset and a take has no DC to click
    on at an edit. An empty 0 Hz bin would let the lowest partials leak one through the window.
    """

    def __init__(self, config: StftConfig):
        super().__init__()
        self.n_fft, self.hop, self.channels = config.n_fft, config.hop_length, config.audio_channels
        self.bins = config.n_fft // 2  # every bin but 0 Hz
        self.sureness_power = config.sureness_power
        self.trunk = FrameTrunk(
            config.latent_dim, config.width, config.depth, config.kernel_size, self.channels * self.bins * 3
        )
        with torch.no_grad():
            # Start quiet rather than at unit magnitudes, a roar of white noise at full scale.
            self.trunk.proj_out.bias.view(self.channels, 3, self.bins)[:, 0] = INITIAL_LOG_MAGNITUDE
        self.band_head = None
        if config.head_bands:
            self.band_head = BandHead(
                config.width, self.channels, 3, self.bins, config.head_bands, config.head_band_width
            )
        self.partial_head = None
        if config.partial_bands:
            self.partial_head = PartialHead(
                config.width, self.channels, self.bins, config.partial_bands, config.partial_width
            )

    def phase_noise_shape(self, frames: int) -> tuple[int, int]:
        """The shape of one take's phase noise, white noise audio: [channels, frames · hop]."""
        return self.channels, frames * self.hop

    def forward(self, latents: torch.Tensor, phase_noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(latents, phase_noise)[0]

    def decode(
        self, latents: torch.Tensor, phase_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Partials | None]:
        """Latents [B, latent_dim, K] and phase noise, white noise audio [B, channels, K · hop] of
        unit variance -> (audio [B, channels, K · hop], the phasors and the log magnitudes written,
        each [B, channels, K, bins], and the partial head's positions and log levels, each [B,
        channels, K, bands], or None without one). Without noise every take gets the same fixed
        draw, so a decode depends on nothing but its latents.

        The unsure bins take their phases from the noise's own STFT, not from independent draws per
        frame: phases that turn from one overlapping frame to the next as a real noise's do
        overlap-add into a noise, where independent ones left more lines on the frame grid (comb
        score 0.082 against 0.108 on one checkpoint)."""
        audio, phasors, log_magnitudes, partials = [], [], [], []
        for spectra, phasor, log_magnitude, partial in self._written_takes(latents, phase_noise):
            audio.append(overlap_add(spectra, self.n_fft, self.hop))
            phasors.append(phasor)
            log_magnitudes.append(log_magnitude)
            partials.append(partial)
        placed = None
        if self.partial_head is not None:
            placed = (torch.cat([p[0] for p in partials]), torch.cat([p[1] for p in partials]))
        return torch.cat(audio).to(latents.dtype), torch.cat(phasors), torch.cat(log_magnitudes), placed

    def written_spectra(self, latents: torch.Tensor, phase_noise: torch.Tensor | None = None) -> torch.Tensor:
        """The complex spectra [B, channels, K, n_fft / 2 + 1] whose overlap-add `decode` returns:
        what `studio eval vae` splits into the decoder's magnitudes and its phases."""
        return torch.cat([spectra for spectra, *_ in self._written_takes(latents, phase_noise)])

    def _written_takes(
        self, latents: torch.Tensor, phase_noise: torch.Tensor | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, Partials | None]]:
        """(spectra, phasors, log magnitudes, partials) of each take in turn, as `spectra` gives
        them, with the partial head's positions and levels (None without one)."""
        trunk = self.trunk
        if phase_noise is None:
            shape = self.phase_noise_shape(latents.shape[-1])
            phase_noise = fixed_phase_noise(shape)[None].expand(latents.shape[0], *shape)
        phase_noise = phase_noise.to(latents.device)
        hidden = trunk.norm_in(trunk.proj_in(latents.transpose(1, 2).to(trunk.proj_in.weight.dtype)))
        for block in trunk.blocks:
            hidden = block(hidden)
        # From here on each take is one pass over a few megabytes, which stays in cache when takes go
        # one at a time: a whole batch at once is slower per take than a single one.
        for take, noise in zip(hidden, phase_noise, strict=True):
            noise_spectra = frame_spectra(noise[None], self.n_fft, self.hop)[..., 1:]  # about unit power
            normed = trunk.norm_out(take[None])
            out = trunk.proj_out(normed)
            if self.band_head is not None:
                out = out + self.band_head(normed)
            yield self.spectra(out, noise_spectra, normed)

    def spectra(
        self, out: torch.Tensor, phase_noise: torch.Tensor, normed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Partials | None]:
        """The trunk's output [B, K, channels · 3 · bins], the noise's spectra [B, channels, K,
        bins] and the normed trunk features [B, K, width] (read by a partial head, needed with one) ->
        (spectra [B, channels, K, bins + 1], the 0 Hz bin cancelling each windowed frame's sum, the
        phasors and log magnitudes written in the other bins, [B, channels, K, bins], and the
        partial head's positions and levels, or None)."""
        batch, frames = out.shape[:2]
        written = out.float().reshape(batch, frames, self.channels, 3, self.bins).transpose(1, 2)
        log_magnitude, real, imag = written.unbind(3)  # each [B, C, K, bins]
        partials = None
        if self.partial_head is not None:
            partials = self.partial_head(normed, torch.hypot(real, imag))
            log_magnitude = self.partial_head.write(log_magnitude, *partials)
        noise = torch.view_as_real(phase_noise)
        sureness = real.square() + imag.square()  # |p|²
        sure = sureness.clamp_max(1).pow(self.sureness_power / 2)
        # √(1 − sure²), with a floor under the root so its gradient stays finite where sure reaches 1
        doubt = ((1 - sure.square()).clamp_min(0) + 1e-4).sqrt() - 1e-2
        # In real arithmetic, and in as few passes as the formula allows: the decoder's time here
        # goes to passes over memory, not to arithmetic.
        coherent = sure * (sureness + 1e-12).rsqrt()
        written_real = torch.addcmul(real * coherent, doubt, noise[..., 0])
        written_imag = torch.addcmul(imag * coherent, doubt, noise[..., 1])
        log_magnitude = log_magnitude.clamp_max(MAX_LOG_MAGNITUDE)
        gain = (
            log_magnitude.exp()
            * torch.addcmul(written_imag.square(), written_real, written_real).add_(1e-12).rsqrt_()
        )
        spectra = real.new_empty(batch, self.channels, frames, self.bins + 1, 2)
        # Slice assignment rather than mul(out=...): it keeps the graph for training
        spectra[..., 1:, 0] = written_real * gain
        spectra[..., 1:, 1] = written_imag * gain
        spectra[..., 0, 0] = spectra[..., 1, 0]  # each windowed frame then sums to 0: no DC
        spectra[..., 0, 1] = 0
        return torch.view_as_complex(spectra), torch.complex(real, imag), log_magnitude, partials


@functools.lru_cache(maxsize=4)
def fixed_phase_noise(shape: tuple[int, ...]) -> torch.Tensor:
    """One draw of phase noise per shape, kept: a decode without noise of its own gets this one."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def stft_reach(side: StftConfig) -> int:
    """The stretch of audio, in samples, behind one latent frame (encoder) or one output sample
    (decoder): each block's depthwise convolution reaches kernel_size // 2 frames either way, and
    one frame spans n_fft samples."""
    return 2 * side.depth * (side.kernel_size // 2) * side.hop_length + side.n_fft
