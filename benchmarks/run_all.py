"""Runs every benchmark of the project (`make bench`) and writes benchmarks/results/.

Arguments are passed on to each benchmark, e.g. `--repeats 9` or `--timm-python PATH`.
"""

import os
import sys

import vit_cpu

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--output" not in argv:
        argv += ["--output", os.path.relpath(os.path.join(RESULTS, "vit_b16_cpu.md"))]
    return vit_cpu.main(argv)


if __name__ == "__main__":
    sys.exit(main())
