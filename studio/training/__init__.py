"""Training: `studio train autoencoder | flow | arc | mar` (see docs/training.md).

autoencoder.py  the Oobleck VAE (STFT + adversarial + feature-matching + KL losses)
flow.py         rectified-flow pretraining of the DiT on cached latents, with CFG dropout
arc.py          ARC post-training into a few-step ping-pong model
mar.py          masked generative training of a MAR model: diffusion or energy head, distillation
loop.py         what they share: run folder (state.pt, log.jsonl, model/), EMA, DDP, progress
data.py         audio and latent datasets over the corpus, the latent cache
losses.py       losses and noise-level samplers (pure functions)
discriminators.py  multi-scale STFT discriminator, ARC's DiT-trunk discriminator
cli.py          the command line
"""
