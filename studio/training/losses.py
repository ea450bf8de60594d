"""Training losses and noise-level samplers, as small pure functions.

Conventions are the sampler's (studio.sampling): x_t = (1 - t) · x0 + t · ε, the DiT predicts the
velocity v = ε - x0, and one step denoises with x0 = x_t - t · v. Discriminator logits are
"higher = more real"; every adversarial loss here is a mean over all logits it is given.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from studio.audio import mel_filterbank

# -- noise levels --------------------------------------------------------------------------------


def logsnr_uniform_t(
    batch: int, generator: torch.Generator, low: float = -6.0, high: float = 2.0
) -> torch.Tensor:
    """Times t = sigmoid(-λ) with λ = log((1 - t) / t) uniform in [low, high].

    λ is the log-SNR in the convention of studio.sampling.logsnr_schedule, so the ARC generator
    trains on exactly the span the ping-pong sampler walks: t from sigmoid(6) ≈ 0.998 down to
    sigmoid(-2) ≈ 0.119.
    """
    logsnr = low + (high - low) * torch.rand(batch, generator=generator)
    return torch.sigmoid(-logsnr)


def logit_normal_t(
    batch: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0
) -> torch.Tensor:
    """t = sigmoid(mean + std · n). A mean of log(s) is the usual "shift by s" of flow models
    (t' = s·t / (1 + (s - 1)·t)): negative means favour low noise, positive high noise."""
    return torch.sigmoid(mean + std * torch.randn(batch, generator=generator))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) · x0 + t · ε with one t per row."""
    t = t.view(-1, *([1] * (x0.dim() - 1))).to(x0)
    return (1 - t) * x0 + t * noise


def denoise(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One-step estimate of x0 from x_t and the predicted velocity: x_t - t · v."""
    return x_t - t.view(-1, *([1] * (x_t.dim() - 1))).to(x_t) * velocity


# -- flow matching -------------------------------------------------------------------------------


def rectified_flow_loss(velocity: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted velocity and the flow's velocity ε - x0."""
    return F.mse_loss(velocity.float(), (noise - x0).float())


# -- autoencoder ---------------------------------------------------------------------------------


def kl_loss(mean: torch.Tensor, stdev: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, stdev²) ‖ N(0, 1)) of [B, C, T] posteriors, summed over C and averaged over B, T.

    Without the usual ½, as stable-audio-tools computes it, so its weight (1e-4) carries over.
    """
    var = stdev.float().square()
    return (mean.float().square() + var - var.log() - 1).sum(1).mean()


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """[N, T] signals -> [N, n_fft/2 + 1, frames] magnitudes (Hann window), floored at 1e-4 (-80 dB
    re. 1) so the log of silence is finite, as auraloss does."""
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x.float(), n_fft, hop, window=window, return_complex=True)
    return spec.abs().clamp_min(1e-4)


def stft_loss(pred: torch.Tensor, target: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Spectral convergence + L1 of log magnitudes at one resolution, for [N, T] signals.

    Convergence is one ratio over all N signals together, so a silent one (a padded clip, the side
    channel of a mono source) does not divide by nearly zero.
    """
    p, t = stft_magnitude(pred, n_fft, hop), stft_magnitude(target, n_fft, hop)
    convergence = torch.linalg.vector_norm(t - p) / torch.linalg.vector_norm(t)
    return convergence + F.l1_loss(p.log(), t.log())


def multi_resolution_stft_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64, 32),
    hop_fraction: float = 0.25,
) -> torch.Tensor:
    """Mean of `stft_loss` over resolutions, for [B, C, T] audio.

    Stereo is compared as sum and difference (mid/side), as the field trains stereo VAEs: an
    error in the stereo image then costs as much as one in the mix.
    """
    if pred.shape[1] == 2:
        pred = torch.stack((pred[:, 0] + pred[:, 1], pred[:, 0] - pred[:, 1]), dim=1)
        target = torch.stack((target[:, 0] + target[:, 1], target[:, 0] - target[:, 1]), dim=1)
    pred, target = pred.flatten(0, 1), target.flatten(0, 1)
    terms = [stft_loss(pred, target, n_fft, max(1, int(n_fft * hop_fraction))) for n_fft in fft_sizes]
    return torch.stack(terms).mean()


def phase_loss(
    pred: torch.Tensor, target: torch.Tensor, n_fft: int = 2048, hop: int = 512, compression: float = 1.0
) -> torch.Tensor:
    """Anti-wrapped phase errors at one STFT resolution, for [B, C, T] audio, weighted by the
    target's magnitude^compression so that what is loud counts and silence and a window's leakage
    do not: the mean of 1 − cos of the
    error in each bin's phase, in its advance from one frame to the next (instantaneous frequency,
    which is a partial's pitch) and in its difference to the next bin up (group delay, which is
    where in the frame an onset falls). 0 when the phases agree, 2 at worst.

    A magnitude loss is blind to all three: a decoder that predicts phase (an STFT decoder) learns
    them only from how its overlapping frames add up, slowly, unless told directly (APNet's
    instantaneous phase, group delay and phase-time difference losses).
    """
    window = torch.hann_window(n_fft, device=pred.device)

    def unit_spectra(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spectra = torch.stft(x.flatten(0, 1).float(), n_fft, hop, window=window, return_complex=True)
        magnitude = spectra.abs()
        # The phase as a unit phasor; the floor (−100 dB) keeps its gradient finite in silence.
        return spectra / (magnitude.square() + 1e-10).sqrt(), magnitude

    p, _ = unit_spectra(pred)
    t, magnitude = unit_spectra(target)
    weight = magnitude.pow(compression)

    def error(pp: torch.Tensor, tt: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w * (1 - (pp * tt.conj()).real)).sum() / w.sum().clamp_min(1e-8)

    frame_weight = (weight[..., 1:] * weight[..., :-1]).sqrt()
    bin_weight = (weight[:, 1:] * weight[:, :-1]).sqrt()
    terms = (
        error(p, t, weight),
        error(p[..., 1:] * p[..., :-1].conj(), t[..., 1:] * t[..., :-1].conj(), frame_weight),
        error(p[:, 1:] * p[:, :-1].conj(), t[:, 1:] * t[:, :-1].conj(), bin_weight),
    )
    return torch.stack(terms).mean()


def phasor_loss(phasors: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ |T| · |p − T / |T||² / Σ |T| between predicted phasors p and the original's complex
    spectra T of the same frames (both [..., bins]): a regression onto the unit phasor of each bin,
    weighted by how loud it is. Where the phase is pinned down p learns it at length 1; where it is
    anyone's guess (a noise's bins) the best p is the mean of the possible phasors, about 0. So |p|
    learns how sure the decoder can be, which is what an STFT decoder needs to know where to write
    random phases (studio.models.spectral.StftDecoder)."""
    weight = target.abs()
    unit = target / weight.clamp_min(1e-8)
    return (weight * (phasors - unit).abs().square()).sum() / weight.sum().clamp_min(1e-8)


def log_magnitude_loss(
    log_magnitudes: torch.Tensor, target: torch.Tensor, floor: float = 1e-3
) -> torch.Tensor:
    """Mean over bins of |m − log|T|| between the log magnitudes m an STFT decoder writes and the
    original's complex spectra T of the same frames (both [..., bins]); where |T| is under the
    floor (−60 dB of a unit noise's bins) only how far m rises above the floor's log counts.

    A loss on the output alone hardly reaches a bin written far too quietly: the output's bin there
    is mostly leakage from the loud bins around it, so the gradient at the written magnitude shrinks
    with it (0.05% of the pull on a bin one nat too loud, for a partial written 15 nats down). Here
    every bin is pulled alike however quiet it is written. A small STFT autoencoder trained from
    scratch on tones without it wrote every sine above 1.3 kHz at one frequency; with it, it began
    to place them (recipes/studio-mini-stft/README.md)."""
    excess = log_magnitudes.float() - target.abs().clamp_min(floor).log()
    return torch.where(target.abs() > floor, excess.abs(), excess.clamp_min(0)).mean()


def loudest_partials(
    target: torch.Tensor, bands: int, floor: float = 1e-3, prominence: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the loudest partial of each of `bands` equal stretches of a spectrum lies: complex
    spectra [..., bins] -> (position in bins between 0 and bins − 1, log level, weight), each
    [..., bands].

    The position is the band's loudest bin moved by a parabola through its log magnitude and its
    neighbours' (a Hann-windowed sine's peak comes back to a tenth of a bin). The weight says how
    much of a partial it is: 0 unless the bin is a local maximum above `floor`, rising from 0 to 1
    as it stands 3 to 6 nats (`prominence` to twice it) above the band's median, so a noise's
    strongest bin, which stands about 2 above, seldom counts. The level is the level to write
    there: the bin's log magnitude where it is a partial, `prominence` nats under the band's
    median where there is none (a lobe written that low hides in the band's noise), in between as
    the weight says."""
    log_magnitude = target.abs().clamp_min(1e-6).log()
    width = log_magnitude.shape[-1] // bands
    banded = log_magnitude.unflatten(-1, (bands, width))
    loudest = banded.argmax(-1) + torch.arange(bands, device=target.device) * width
    padded = F.pad(log_magnitude, (1, 1), value=math.log(1e-6))
    below, peak, above = (padded.gather(-1, loudest + shift) for shift in (0, 1, 2))
    curvature = below - 2 * peak + above
    shift = torch.where(curvature < -1e-6, 0.5 * (below - above) / curvature.clamp_max(-1e-6), 0.0)
    median = banded.median(-1).values
    weight = ((peak - median - prominence) / prominence).clamp(0, 1)
    weight = weight * ((peak >= below) & (peak >= above) & (peak > math.log(floor)))
    level = weight * peak + (1 - weight) * (median - prominence)
    return loudest + shift.clamp(-0.5, 0.5), level, weight


def partial_placement_loss(
    positions: torch.Tensor, levels: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """How far a partial head (studio.models.spectral.PartialHead) puts each band's partial from
    the original's loudest one (`loudest_partials`): |position − its position| in bins and |level
    − the level to write there|, each a mean over the bands that hold a partial (weighted by how
    much of one), plus the level's over the bands that hold none. Without the second, a head that
    learns to write loud partials writes them into a noise's bands too; with one mean over every
    band, the few bands that hold a partial are outvoted and no partial is written loud enough.
    positions and levels [..., bands]; target complex [..., bins]."""
    place, level, weight = loudest_partials(target, positions.shape[-1])
    missed = (levels - level).abs()

    def mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (weights * values).sum() / weights.sum().clamp_min(1.0)

    return mean((positions - place).abs() + missed, weight) + mean(missed, 1 - weight)


# Window sizes and band counts of DAC's multi-scale mel loss: the bands grow with the window, so
# short windows are not split into bands narrower than their FFT bins.
MEL_RESOLUTIONS = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 160), (2048, 320))


def multi_resolution_mel_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    resolutions: tuple[tuple[int, int], ...] = MEL_RESOLUTIONS,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Mean over resolutions of the L1 distance between log10 mel magnitudes, for [B, C, T] audio.

    Level errors cost the same in every band, which is what a plain STFT loss lacks: its
    convergence term is dominated by the loudest bins and its log term by the near-silent ones.
    """
    pred, target = pred.flatten(0, 1).float(), target.flatten(0, 1).float()
    terms = []
    for n_fft, n_mels in resolutions:
        bank = torch.tensor(mel_filterbank(sample_rate, n_fft, n_mels), dtype=pred.dtype, device=pred.device)
        window = torch.hann_window(n_fft, device=pred.device)
        mels = [
            torch.einsum(
                "mf,nft->nmt",
                bank,
                torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs(),
            )
            .clamp_min(floor)
            .log10()
            for x in (pred, target)
        ]
        terms.append(F.l1_loss(*mels))
    return torch.stack(terms).mean()


def low_band_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    cutoff_hz: float = 40.0,
    band_hz: float = 5.0,
    floor: float = 1e-10,
) -> torch.Tensor:
    """L1 distance between log10 energies of `band_hz`-wide bands from 0 Hz (DC included) up to
    `cutoff_hz`, over each [B, C, T] example's whole length (Hann window).

    A decoder that upsamples latent frames can leak their frame-to-frame changes into the output
    as steps, which is energy below 40 Hz. The STFT and mel losses give that region a handful of
    their bins, so it goes unpunished; one long transform resolves it into bands of its own.
    """
    pred, target = pred.flatten(0, 1).float(), target.flatten(0, 1).float()
    samples = pred.shape[-1]
    window = torch.hann_window(samples, device=pred.device)
    frequencies = torch.fft.rfftfreq(samples, 1 / sample_rate, device=pred.device)
    band_count = int(cutoff_hz // band_hz)
    band = (frequencies // band_hz).long()
    in_band = band < band_count

    def band_energies(x: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(x * window).abs().square()[:, in_band] / samples**2
        return torch.zeros(x.shape[0], band_count, device=x.device).index_add_(1, band[in_band], power)

    return F.l1_loss(*(band_energies(x).clamp_min(floor).log10() for x in (pred, target)))


def hinge_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Σ over discriminators of mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return sum(
        F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real, fake, strict=True)
    )


def hinge_generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Σ over discriminators of mean(relu(1 - D(fake)))."""
    return sum(F.relu(1 - f.float()).mean() for f in fake)


def lsgan_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: Σ mean((1 - D(real))²) + mean(D(fake)²)."""
    return sum(
        (1 - r.float()).square().mean() + f.float().square().mean() for r, f in zip(real, fake, strict=True)
    )


def lsgan_generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: Σ mean((1 - D(fake))²)."""
    return sum((1 - f.float()).square().mean() for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator feature maps, each layer normalised by its real activations' mean
    magnitude (EnCodec's recipe) so loud layers do not drown quiet ones; averaged over layers."""
    terms = [
        F.l1_loss(f.float(), r.detach().float()) / r.detach().float().abs().mean().clamp_min(1e-5)
        for real_layers, fake_layers in zip(real, fake, strict=True)
        for r, f in zip(real_layers, fake_layers, strict=True)
    ]
    return torch.stack(terms).mean()


# -- ARC post-training ---------------------------------------------------------------------------


def relativistic_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """softplus(D(fake) - D(real)) over pairs that share prompt and noise: D ranks real above fake."""
    return F.softplus(fake.float() - real.float()).mean()


def relativistic_generator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """softplus(D(real) - D(fake)): the generator pushes its sample above its real partner."""
    return F.softplus(real.float() - fake.float()).mean()


def contrastive_discriminator_loss(
    right: torch.Tensor, wrong: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softplus(D(real, other prompt) - D(real, its prompt)): D must prefer the right prompt.

    `mask` (bool per row) leaves out rows whose "other" prompt happens to be the same text.
    """
    loss = F.softplus(wrong.float() - right.float())
    if mask is None:
        return loss.mean()
    weight = mask.to(loss)
    return (loss * weight).sum() / weight.sum().clamp_min(1)


# -- energy score (MAR energy head) --------------------------------------------------------------


def energy_score_loss(
    x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Two-sample energy score of rows [N, C], averaged: ‖x1 − y‖^α + ‖x2 − y‖^α − ‖x1 − x2‖^α.

    x1 and x2 are two independent samples of the model for the target y. For 0 < α < 2 this is a
    strictly proper scoring rule: its expectation is smallest exactly when the model's samples are
    distributed as the targets, so a one-step generator can learn a whole distribution (twice the
    usual E‖X − y‖ − ½·E‖X − X'‖; the minimiser is the same).
    """

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a.float() - b.float(), dim=-1).pow(alpha)

    return (distance(x1, y) + distance(x2, y) - distance(x1, x2)).mean()


# -- variational score distillation (SwiftAudio / DMD2) ----------------------------------------------


def distribution_matching_loss(
    x0: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor
) -> torch.Tensor:
    """The one-step generator's VSD loss, as DMD2 writes it (Yin et al., 2024).

    x0 are the generator's samples; real_x0 and fake_x0 are the teacher's and the fake score's
    denoised predictions of the same noised x0. The gradient KL(fake ‖ real) gives each sample is
    proportional to fake_x0 − real_x0 (the two scores' difference in denoised form); dividing it by
    the sample's mean |x0 − real_x0| keeps its size the same at every noise level. It reaches x0
    through a stop-gradient target: d/dx0 of ½·mean((x0 − target)²) is that gradient / x0.numel().
    """
    with torch.no_grad():
        axes = tuple(range(1, x0.dim()))
        scale = (x0 - real_x0).abs().float().mean(dim=axes, keepdim=True).clamp_min(1e-6)
        target = x0.float() - (fake_x0 - real_x0).float() / scale
    return 0.5 * F.mse_loss(x0.float(), target)


def temporal_smoothness(x0: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring latent frames [B, C, T] along time: zero for a
    constant latent, large where a one-step sample jumps from frame to frame."""
    return (x0[..., 1:] - x0[..., :-1]).float().pow(2).mean()
