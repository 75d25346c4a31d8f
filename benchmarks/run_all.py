"""Runs every benchmark of the project (`make bench`) and writes benchmarks/results/.

- `vit_cpu.py`: ViT-B/16 inference (results/vit_b16_cpu.md); every argument is passed on to it,
  e.g. `--repeats 9` or `--timm-python PATH`;
- `train_speed.py`: training throughput of the CIFAR ViT and ViT-S/16 (results/train_cpu.md); it
  gets `--timm-python` and `--threads` from the arguments.
"""

import os
import sys

import train_speed
import vit_cpu

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SHARED = ("--timm-python", "--threads")


def _shared_arguments(argv):
    shared = []
    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name in SHARED:
            shared += [arg] if "=" in arg else argv[i : i + 2]
    return shared


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    inference = argv + (
        ["--output", os.path.relpath(os.path.join(RESULTS, "vit_b16_cpu.md"))] if "--output" not in argv else []
    )
    status = vit_cpu.main(inference)
    training = _shared_arguments(argv) + ["--output", os.path.relpath(os.path.join(RESULTS, "train_cpu.md"))]
    return status or train_speed.main(training)


if __name__ == "__main__":
    sys.exit(main())
