"""Alignment speed: gLocal fit time on many triplets, and LoRA (HA) training throughput.

* gLocal: ``--triplets`` triplets over ``--objects`` images with ``--dim``-d features
  (synthetic features with a hidden "human" subspace), fixed ``--glocal-epochs``, no early
  stopping; reports seconds per epoch and triplets/s.
* LoRA: hinge-loss training steps on a backbone with random weights (speed does not depend
  on the values) at its native resolution, from preprocessed uint8 tensors; reports
  triplets/s (each triplet = 3 images forward + backward).

    python benchmarks/alignment_speed.py --triplets 1000000 --dim 768 --lora-backbone dino-vit-b-16  # GPU
    python benchmarks/alignment_speed.py --triplets 20000 --dim 128 --lora-backbone tiny-vit-random   # CPU smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from percep_rag.alignment.glocal import GlocalFitConfig, TripletFeatures, fit_glocal
from percep_rag.alignment.lora import LoraFitConfig, _Trainer, cosine_distance, hinge_loss
from percep_rag.backbones import create_backbone


def synthetic_triplets(objects: int, dim: int, triplets: int, seed: int = 0) -> TripletFeatures:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((objects, dim)).astype(np.float32)
    hidden = features[:, :8]
    anchor, left, right = (rng.integers(0, objects, triplets) for _ in range(3))
    d_left = np.linalg.norm(hidden[anchor] - hidden[left], axis=1)
    d_right = np.linalg.norm(hidden[anchor] - hidden[right], axis=1)
    return TripletFeatures(features, anchor, left, right, (d_right < d_left).astype(np.float64))


def bench_glocal(args: argparse.Namespace) -> dict:
    data = synthetic_triplets(args.objects, args.dim, args.triplets)
    config = GlocalFitConfig(
        epochs=args.glocal_epochs,
        min_epochs=args.glocal_epochs,
        device=args.device,
        triplet_batch_size=args.glocal_batch,
    )
    started = time.perf_counter()
    _, report = fit_glocal(data, config=config, progress=False)
    seconds = time.perf_counter() - started
    return {
        "triplets": args.triplets,
        "dim": args.dim,
        "epochs": report.epochs_run,
        "batch": args.glocal_batch,
        "seconds_total": seconds,
        "seconds_per_epoch": seconds / max(report.epochs_run, 1),
        "triplets_per_s": args.triplets * report.epochs_run / seconds,
        "device": report.device,
    }


def bench_lora(args: argparse.Namespace, run_dir: Path) -> dict:
    backbone = create_backbone(args.lora_backbone, "random")
    trainer = _Trainer(backbone, LoraFitConfig(device=args.device, batch_size=args.lora_batch), run_dir)
    size = backbone.preprocess.image_size
    images = torch.randint(0, 256, (3 * args.lora_batch, 3, size, size), dtype=torch.uint8)
    target = torch.ones(args.lora_batch, device=trainer.device)
    trainer.model.train()

    def step() -> None:
        features = trainer.features(images)
        n = args.lora_batch
        loss = hinge_loss(
            cosine_distance(features[:n], features[n : 2 * n]),
            cosine_distance(features[:n], features[2 * n :]),
            target,
            0.05,
        )
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.lora_steps):
        step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "backbone": args.lora_backbone,
        "image_size": size,
        "batch_triplets": args.lora_batch,
        "steps": args.lora_steps,
        "triplets_per_s": args.lora_batch * args.lora_steps / seconds,
        "random_weights": True,
        "device": str(trainer.device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--triplets", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--glocal-epochs", type=int, default=3)
    parser.add_argument("--glocal-batch", type=int, default=4096)
    parser.add_argument("--lora-backbone", default="dino-vit-b-16")
    parser.add_argument("--lora-batch", type=int, default=32)
    parser.add_argument("--lora-steps", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import tempfile

    glocal = bench_glocal(args)
    with tempfile.TemporaryDirectory() as run_dir:
        lora = bench_lora(args, Path(run_dir))
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else platform.processor()
    )
    print(f"# alignment speed ({datetime.date.today()}, {device or 'cpu'}, torch {torch.__version__})")
    print(
        f"gLocal: {glocal['triplets']} triplets x {glocal['dim']}-d, {glocal['epochs']} epochs "
        f"(batch {glocal['batch']}): "
        f"{glocal['seconds_per_epoch']:.2f} s/epoch, {glocal['triplets_per_s']:.0f} triplets/s"
    )
    print(
        f"LoRA: {lora['backbone']} (random weights) @ {lora['image_size']} px, batch {lora['batch_triplets']}: "
        f"{lora['triplets_per_s']:.1f} triplets/s"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"date": str(datetime.date.today()), "device": device, "glocal": glocal, "lora": lora}, indent=1)
        )


if __name__ == "__main__":
    main()
