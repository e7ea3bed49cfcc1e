"""Training throughput (images/s) of MobileViTv3 classifiers: forward + label-smoothed cross-entropy + backward +
AdamW step on synthetic 256x256 batches, the work of one step of the ImageNet recipes (data loading excluded).

    python benchmarks/train_throughput.py [--models mobilevitv3_xxs mobilevitv3_s] [--size 256]
        [--batch-size 16] [--steps 10] [--warmup 3] [--threads N] [--device cpu cuda] [--markdown]

CPU runs fp32 (the CPU path of `mobilevitv3 train` with `amp: auto`), NCHW unless --channels-last; CUDA runs fp16
autocast + GradScaler and channels-last, as the recipes do on GPUs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import torch
import torch.nn.functional as F

from mobilevitv3 import create_model
from mobilevitv3.train.config import TrainConfig
from mobilevitv3.train.optim import build_optimizer, param_groups


def measure(name: str, *, device: str, size: int, batch: int, steps: int, warmup: int,
            channels_last: bool = False) -> dict:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    channels_last = channels_last or cuda
    model = create_model(name, num_classes=1000).to(dev).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(model=name)
    optimizer = build_optimizer(param_groups(model, cfg), cfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=cuda)
    x = torch.rand(batch, 3, size, size, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.float16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"model": name, "device": torch.cuda.get_device_name(dev) if cuda else f"cpu ({torch.get_num_threads()} "
            f"threads)", "precision": "fp16 autocast" if cuda else "fp32", "size": size, "batch": batch,
            "channels_last": channels_last, "steps": steps, "images_per_s": round(batch * steps / seconds, 1),
            "ms_per_step": round(1000 * seconds / steps, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilevitv3_xxs", "mobilevitv3_s"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    p.add_argument("--channels-last", action="store_true", help="channels-last model and input on CPU too")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON lines")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(m, device=d, size=args.size, batch=args.batch_size, steps=args.steps, warmup=args.warmup,
                    channels_last=args.channels_last)
            for d in args.device for m in args.models]
    if not args.markdown:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"{datetime.date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}\n")
    print("| model | device | precision | input | batch | images/s | ms/step |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['device']} | {r['precision']} | {r['size']}x{r['size']} | {r['batch']} | "
              f"{r['images_per_s']} | {r['ms_per_step']} |")


if __name__ == "__main__":
    main()
