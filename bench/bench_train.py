"""Training speed with PairStream against in-memory tensors: the data path's overhead.

    python bench/bench_train.py DATASET [--ngf 64] [--ndf 64] [--batch-size 64] [--steps 20]
        [--rounds 3] [--device auto] [--amp off,bf16] [--num-workers 2]

One pix2pix model (U-Net + PatchGAN, sized from the dataset) trains, in rounds that
alternate, on:

* stream: batches from ``PairLoader(PairStream(DATASET, "train"))`` with DataLoader
  workers (shuffled, as ``musicpairs train`` reads them), copied to the device in the step;
* memory: uint8 tensors of the same shape made up front (random sparse rolls), already in
  (pinned, on a GPU) memory, copied to the device the same way.

Each (amp, route) pair first runs untimed steps (cuDNN autotuning, allocator, workers
starting); a timed round is ``--steps`` steps ended by a device synchronisation. The
overhead is 1 - stream / memory samples/s, per round and as the median. Target: < 10 %.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def endless(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch["source"], batch["target"]
        epoch += 1


def in_memory(meta, batch_size: int, pin: bool, count: int = 8):
    g = torch.Generator().manual_seed(0)

    def rolls(shape):
        sounding = torch.rand((batch_size, *shape), generator=g) < 0.02
        velocity = torch.randint(1, 128, (batch_size, *shape), generator=g, dtype=torch.uint8)
        out = torch.where(sounding, velocity, torch.zeros_like(velocity))
        return out.pin_memory() if pin else out

    batches = [(rolls(meta.source_shape), rolls(meta.target_shape)) for _ in range(count)]
    i = 0
    while True:
        yield batches[i % count]
        i += 1


def timed(model, batches, steps: int, device) -> float:
    """Samples per second over ``steps`` steps."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    n = 0
    for _ in range(steps):
        source, target = next(batches)
        model.step(source, target)
        n += len(source)
    sync()
    return n / (time.perf_counter() - start)


def main() -> None:
    from musicpairs.config import TrainConfig
    from musicpairs.loader import PairLoader, PairStream
    from musicpairs.model.train import Pix2Pix, resolve_device

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="off", help="comma-separated: off, bf16, fp16")
    ap.add_argument("--num-workers", type=int, default=2)
    args = ap.parse_args()

    device = resolve_device(args.device)
    pin = device.type == "cuda"
    stream = PairStream(args.dataset, "train", shuffle=True, seed=0)
    loader = PairLoader(stream, args.batch_size, num_workers=args.num_workers,
                        pin_memory=pin, prefetch_factor=4 if args.num_workers else None)
    routes = {"stream": endless(loader),
              "memory": in_memory(stream.meta, args.batch_size, pin)}
    print(f"device {device}  ngf {args.ngf}  ndf {args.ndf}  batch {args.batch_size}  rolls "
          f"{stream.meta.source_shape} -> {stream.meta.target_shape}  "
          f"{args.num_workers} loader workers  {torch.get_num_threads()} torch threads")
    print(f"{'amp':5} {'round':>5} {'stream/s':>10} {'memory/s':>10} {'overhead':>9}")
    for amp in args.amp.split(","):
        cfg = TrainConfig(data=args.dataset, out="-", ngf=args.ngf, ndf=args.ndf, amp=amp,
                          batch_size=args.batch_size)
        torch.manual_seed(0)
        model = Pix2Pix(cfg, stream.meta, device, total_steps=10**6)
        for batches in routes.values():
            timed(model, batches, args.warmup, device)
        rates = {name: [] for name in routes}
        for r in range(args.rounds):
            for name, batches in routes.items():
                rates[name].append(timed(model, batches, args.steps, device))
            s, m = rates["stream"][-1], rates["memory"][-1]
            print(f"{amp:5} {r:>5} {s:>10.1f} {m:>10.1f} {1 - s / m:>8.1%}")
        s, m = statistics.median(rates["stream"]), statistics.median(rates["memory"])
        print(f"{amp:5} {'med':>5} {s:>10.1f} {m:>10.1f} {1 - s / m:>8.1%}")


if __name__ == "__main__":
    main()
