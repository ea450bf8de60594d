"""`studio train autoencoder`: the Oobleck VAE, as the field trains it.

Loss = multi-resolution STFT (mid/side) + kl_weight · KL + adversarial_weight · hinge loss of a
multi-scale STFT discriminator (plus period discriminators with `disc_periods`) + feature_weight ·
feature matching, with the adversarial terms joining after `disc_start` steps. Each step updates
the discriminator on (real, decoded) first, then the VAE. With `freeze_encoder` only the decoder
learns (and KL drops out): the latents stay exactly as they are, so a DiT already trained on them
keeps working with the better decoder.
The exported folder is a complete model: the VAE plus the DiT and conditioners of the config
(untrained, which `studio train flow --init` starts from) or of the `--init` model. Given both,
the config's model starts from every `--init` tensor that fits it: that is how a decoder of a new
layout is trained under an existing encoder and DiT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from studio.data.manifest import read_manifest
from studio.models import Model, ModelConfig, build_model, load_model
from studio.models.autoencoder import Autoencoder, context_samples, vae_sample
from studio.models.checkpoint import name_listing
from studio.models.spectral import StftDecoder, frame_spectra
from studio.training import losses
from studio.training.data import AudioClips, split_clips
from studio.training.discriminators import AudioDiscriminator
from studio.training.loop import (
    EMA,
    Checkpoint,
    Run,
    TrainConfig,
    TrainingError,
    copy_matching_weights,
    frozen,
    optimizer_step,
    step_generator,
    train_only,
    unwrap,
)


@dataclass
class AutoencoderTrainConfig(TrainConfig):
    config: Path | None = None  # model_config.json to start from scratch …
    init: Path | None = None  # … or a model folder whose VAE to train further (both: --config's
    # model with --init's weights wherever they fit)
    lr: float = 1.5e-4
    chunk: int = 65_536  # audio frames per example (rounded down to whole latent frames)
    disc_lr: float = 3e-4
    disc_filters: int = 32
    disc_n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    disc_periods: tuple[int, ...] = ()  # period discriminators beside the STFT ones (DAC: 2,3,5,7,11)
    disc_start: int = 0  # steps of reconstruction-only training before the adversarial terms join
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64, 32)
    kl_weight: float = 1e-4
    mel_weight: float = 0.0  # multi-scale log-mel L1 (DAC's reconstruction loss, which it weights 15)
    low_band_weight: float = 0.0  # log energies in 5 Hz bands below 40 Hz (losses.low_band_loss)
    # STFT decoders: their phasors (losses.phasor_loss); others: phase, instantaneous frequency and
    # group delay of the output (losses.phase_loss)
    phase_weight: float = 0.0
    # STFT decoders: the log magnitudes they write against the original's (losses.log_magnitude_loss)
    magnitude_weight: float = 0.0
    # STFT decoders with a partial head: its places and levels against the original's loudest
    # partial per band (losses.partial_placement_loss)
    partial_weight: float = 0.0
    # the partial head's learning rate as a multiple of lr: a regression that starts from nothing
    # beside a decoder already trained
    partial_lr_scale: float = 1.0
    tone_share: float = 0.0  # share of training examples that are synthetic notes (data.synthetic_tones)
    adversarial_weight: float = 0.1
    feature_weight: float = 5.0
    freeze_encoder: bool = False  # decoder-only fine-tuning: the latent space stays fixed


class VaeRoundTrip(nn.Module):
    """Encode, draw from the posterior, decode: the module the VAE step trains (and DDP wraps)."""

    def __init__(self, vae: Autoencoder):
        super().__init__()
        self.vae = vae

    def forward(
        self, audio: torch.Tensor, noise: torch.Tensor | None, phase_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
        """audio [B, C, T], posterior noise [B, latent_dim, T / hop] (None: the mean), an STFT
        decoder's phase noise -> (decoded audio, posterior mean, posterior stdev, what an STFT
        decoder wrote besides, or None: its phasors, log magnitudes and partials, as `decode`)."""
        latents, mean, stdev = vae_sample(self.vae.encoder(audio), noise)
        if isinstance(self.vae.decoder, StftDecoder):
            decoded, *written = self.vae.decoder.decode(latents, phase_noise)
            return decoded, mean, stdev, tuple(written)
        return self.vae.decoder(latents), mean, stdev, None


def autoencoder_step(
    net: nn.Module,
    disc: nn.Module,
    opt_vae: torch.optim.Optimizer,
    opt_disc: torch.optim.Optimizer,
    audio: torch.Tensor,
    noise: torch.Tensor,
    config: AutoencoderTrainConfig,
    adversarial: bool,
    sample_rate: int,
    phase_noise: torch.Tensor | None = None,
) -> dict[str, float]:
    """One discriminator update (when `adversarial`), then one VAE update; returns the losses.
    `phase_noise` is what an STFT decoder draws its unsure phases from (None: a fixed draw)."""
    decoded, mean, stdev, written = net(audio, noise, phase_noise)
    decoded = decoded.float()
    reconstruction = losses.multi_resolution_stft_loss(decoded, audio, config.fft_sizes)
    loss = reconstruction
    values = {"stft": reconstruction.item()}
    if not config.freeze_encoder:
        kl = losses.kl_loss(mean, stdev)
        loss = loss + config.kl_weight * kl
        values["kl"] = kl.item()
    if config.mel_weight:
        mel = losses.multi_resolution_mel_loss(decoded, audio, sample_rate)
        loss = loss + config.mel_weight * mel
        values["mel"] = mel.item()
    if written is not None and (config.phase_weight or config.magnitude_weight or config.partial_weight):
        decoder = unwrap(net).vae.decoder
        target = frame_spectra(audio, decoder.n_fft, decoder.hop)[..., 1:]  # every bin but 0 Hz
        phasors, log_magnitudes, partials = written
        if config.phase_weight:
            phasor = losses.phasor_loss(phasors, target)
            loss = loss + config.phase_weight * phasor
            values["phasor"] = phasor.item()
        if config.magnitude_weight:
            magnitude = losses.log_magnitude_loss(log_magnitudes, target)
            loss = loss + config.magnitude_weight * magnitude
            values["magnitude"] = magnitude.item()
        if config.partial_weight and partials is not None:
            partial = losses.partial_placement_loss(*partials, target)
            loss = loss + config.partial_weight * partial
            values["partial"] = partial.item()
    elif config.phase_weight:
        phase = losses.phase_loss(decoded, audio)
        loss = loss + config.phase_weight * phase
        values["phase"] = phase.item()
    if config.low_band_weight:
        low_band = losses.low_band_loss(decoded, audio, sample_rate)
        loss = loss + config.low_band_weight * low_band
        values["low_band"] = low_band.item()
    if adversarial:
        # Real and decoded in one forward, so DDP sees the discriminator run once per update.
        logits, _ = disc(torch.cat((audio, decoded.detach())))
        real, fake = zip(*(scale.chunk(2) for scale in logits), strict=True)
        disc_loss = losses.hinge_discriminator_loss(list(real), list(fake))
        optimizer_step(opt_disc, disc_loss, config.grad_clip)
        with frozen(disc) as judge:
            logits, features = judge(torch.cat((audio, decoded)))
        fake = [scale.chunk(2)[1] for scale in logits]
        real_features = [[f.chunk(2)[0] for f in scale] for scale in features]
        fake_features = [[f.chunk(2)[1] for f in scale] for scale in features]
        adversarial_loss = losses.hinge_generator_loss(fake)
        matching = losses.feature_matching_loss(real_features, fake_features)
        loss = loss + config.adversarial_weight * adversarial_loss + config.feature_weight * matching
        values |= {"disc": disc_loss.item(), "adv": adversarial_loss.item(), "feature": matching.item()}
    optimizer_step(opt_vae, loss, config.grad_clip)
    return values | {"loss": loss.item()}


def _initial_model(config: AutoencoderTrainConfig, run: Run) -> Model:
    """--init as is, --config fresh, or --config with every tensor of --init that fits it (a new
    decoder under an old encoder, say, with --freeze-encoder keeping the DiT's latent space)."""
    if config.config is None and config.init is None:
        raise TrainingError(
            "autoencoder training starts from --config (a new model) or --init (a model folder)",
            "e.g. --config model_config.json",
        )
    if config.config is None:
        return load_model(config.init)
    model = build_model(ModelConfig.from_file(config.config))
    if config.init is None:
        return model
    fresh = copy_matching_weights(model, load_model(config.init))
    if config.freeze_encoder and any(name.startswith("vae.encoder.") for name in fresh):
        raise TrainingError(
            f"--freeze-encoder keeps {config.init}'s latent space, but the encoder of {config.config} "
            "differs from it",
            f"give {config.config} the encoder section of {config.init}/model_config.json",
        )
    run.say(
        f"{config.config} with the weights of {config.init} wherever name and shape agree; "
        f"{len(fresh)} tensors start fresh" + (f": {name_listing(fresh)}" if fresh else "")
    )
    return model


def _parameter_groups(
    model: Model, trainable: list[nn.Parameter], config: AutoencoderTrainConfig
) -> list[dict]:
    """The optimiser's groups: a partial head's parameters at partial_lr_scale times the rate."""
    head = getattr(model.vae.decoder, "partial_head", None)
    in_head = {id(p) for p in head.parameters()} if head is not None else set()
    groups = [{"params": [p for p in trainable if id(p) not in in_head]}]
    heads = [p for p in trainable if id(p) in in_head]
    if heads:
        groups.append({"params": heads, "lr": config.lr * config.partial_lr_scale})
    return groups


def train_autoencoder(config: AutoencoderTrainConfig) -> Path:
    """Train (or continue training) the VAE; returns the folder of the exported model."""
    run = Run(config, "autoencoder")
    state = run.saved_state()
    if state:
        model = build_model(ModelConfig.from_dict(state["model_config"]))
    else:
        model = _initial_model(config, run)
    model_config = model.config
    hop = model_config.autoencoder.downsampling_ratio
    chunk = min(config.chunk, model_config.sample_size) // hop * hop
    if chunk < hop:
        raise TrainingError(f"--chunk {config.chunk} is shorter than one latent frame ({hop} samples)")
    if any(period < 1 or period >= chunk for period in config.disc_periods):
        raise TrainingError(
            f"--disc-periods {','.join(map(str, config.disc_periods))}: a period is a whole number of "
            f"samples from 1 to below the chunk ({chunk})",
            "e.g. --disc-periods 2,3,5,7,11",
        )
    context = context_samples(model_config.autoencoder)
    if chunk < context and chunk < model_config.sample_size:
        run.say(
            f"warning: --chunk {chunk} is shorter than the VAE's context ({context} samples, "
            f"{context / hop:.1f} latent frames), so it never trains on latents with their whole "
            f"context, which every latent of a long clip has when the DiT's takes are decoded; "
            f"use --chunk {-(-2 * context // hop) * hop} or more"
        )
    corpus = read_manifest(config.corpus)
    if not 0 <= config.tone_share <= 1:
        raise TrainingError(f"--tone-share is a share from 0 to 1, got {config.tone_share}")
    train = AudioClips(
        split_clips(corpus, "train", config.corpus),
        model_config.sample_rate,
        model_config.audio_channels,
        chunk,
        config.tone_share,
    )
    valid = split_clips(corpus, "valid", config.corpus, required=False)

    model.to(run.device)
    trainable = train_only(model, model.vae.decoder if config.freeze_encoder else model.vae)
    net = VaeRoundTrip(model.vae)
    disc = AudioDiscriminator(
        model_config.audio_channels, config.disc_filters, config.disc_n_ffts, config.disc_periods
    )
    disc.to(run.device)
    ema = EMA(net, config.ema_decay)
    opt_vae = torch.optim.Adam(_parameter_groups(model, trainable, config), lr=config.lr, betas=(0.8, 0.99))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=config.disc_lr, betas=(0.8, 0.99))
    parts = {"model": model, "discriminator": disc, "ema": ema, "opt_vae": opt_vae, "opt_disc": opt_disc}
    start = run.restore(state, parts) if state else 0
    ddp_net, ddp_disc = run.ddp(net), run.ddp(disc)
    latent_shape = (model_config.autoencoder.latent_dim, chunk // hop)

    phase_shape = model.vae.phase_noise_shape(chunk // hop)

    def step_fn(step: int, batch: dict) -> dict[str, float]:
        audio = batch["audio"].to(run.device, non_blocking=True)
        generator = step_generator(config.seed, run.dist.rank, step)
        noise = torch.randn((audio.shape[0], *latent_shape), generator=generator)
        phase_noise = None
        if phase_shape is not None:
            phase_noise = torch.randn((audio.shape[0], *phase_shape), generator=generator).to(run.device)
        with run.autocast():
            values = autoencoder_step(
                ddp_net,
                ddp_disc,
                opt_vae,
                opt_disc,
                audio,
                noise.to(run.device),
                config,
                step >= config.disc_start,
                model_config.sample_rate,
                phase_noise,
            )
        ema.update(net, step)
        return values

    validate_fn = None
    if valid:
        fixed = run.fixed_batches(
            AudioClips(valid, model_config.sample_rate, model_config.audio_channels, chunk)
        )
        validate_fn = _validator(net, ema, fixed, run.device, config.fft_sizes)

    checkpoint = Checkpoint(model, ema, net, parts)
    return run.loop(start, train, step_fn, checkpoint, validate_fn)


def _validator(
    net: VaeRoundTrip, ema: EMA, fixed: list[dict], device: torch.device, fft_sizes: tuple[int, ...]
) -> Callable[[], dict[str, float]]:
    """STFT loss of the EMA weights' round trip (posterior mean) on fixed validation clips."""

    @torch.no_grad()
    def validate() -> dict[str, float]:
        scores = []
        with ema.applied(net):
            for batch in fixed:
                audio = batch["audio"].to(device)
                decoded = net(audio, None)[0].float()
                scores.append(losses.multi_resolution_stft_loss(decoded, audio, fft_sizes).item())
        return {"stft": sum(scores) / len(scores)}

    return validate
