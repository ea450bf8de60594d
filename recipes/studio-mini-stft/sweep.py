"""The 48-sine sweep this recipe quotes: how many sines from 0.4 to 4.2 kHz an autoencoder gives back
within 10 cents.

    python recipes/studio-mini-stft/sweep.py MODEL_FOLDER [MODEL_FOLDER ...]

Each sine (log-spaced, 1.5 s, amplitude 0.3, both channels) goes through the model's VAE and back
(`studio.eval.vae.round_trip`, the posterior mean); its frequency is read as the strongest bin of a
Hann-windowed 1 s FFT of the middle (1 Hz bins, 4 cents at 400 Hz). `studio eval vae` measures 81
tones from 40 Hz with a finer reader; this sweep is denser where the decoder's anchors are.
"""

import argparse

import numpy as np
import torch

from studio.engine import Engine
from studio.eval.sound import cents
from studio.eval.vae import round_trip

RATE = 44100
FREQUENCIES = np.round(np.exp(np.linspace(np.log(400), np.log(4200), 48)), 1)


def sweep(model: str) -> tuple[int, list[tuple[float, float]]]:
    """(sines within 10 cents, [(frequency, cents off)]) for one model folder."""
    t = np.arange(int(1.5 * RATE)) / RATE
    window = np.hanning(RATE)
    errors = []
    with Engine(model, device="cpu", dtype="float32") as engine:
        for frequency in FREQUENCIES:
            sine = np.stack([0.3 * np.sin(2 * np.pi * frequency * t)] * 2).astype(np.float32)
            middle = round_trip(engine, sine)[0][RATE // 4 : RATE // 4 + RATE]
            peak = np.argmax(np.abs(np.fft.rfft(middle * window)))  # 1 Hz bins
            errors.append((float(frequency), cents(max(peak, 1), frequency)))
    return sum(abs(c) < 10 for _, c in errors), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (model_config.json and weights)")
    torch.set_num_threads(1)
    for model in parser.parse_args().models:
        within, errors = sweep(model)
        print(f"{model}: {within} of {len(errors)} within 10 cents")
        print(" ".join(f"{int(f)}:{round(c)}" for f, c in errors))


if __name__ == "__main__":
    main()
