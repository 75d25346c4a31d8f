"""Helpers of `make mutants` (mutation testing with mutmut 3, see setup.cfg [mutmut]).

    python tests/mutants.py prepare DIR       # in the copy DIR/keras_vit that mutmut mutates
    python tests/mutants.py score results.txt # after `mutmut results --all true > results.txt`

`prepare` keeps mutmut away from the `__init__` of classes (a `# pragma: no mutate block` on them, in the
copy only): mutmut wraps each mutated function in a `(*args, **kwargs)` trampoline, and Keras reads the
argument names of a layer's or model's `__init__` (`Operation.__new__`), so a trampolined `__init__` breaks
every layer. Argument checks in `__init__` are tested by the error-message tests, not by mutants.

`score` prints, per module, the mutants run by status and the score: killed / (killed + survived), a
timeout counting as killed. Mutants that no selected test reaches ("no tests") are counted apart.
"""

import ast
import collections
import configparser
import os
import re
import sys

PRAGMA = "  # pragma: no mutate block"
LINE = re.compile(r"^\s*(?P<name>\S+?)__mutmut_\d+: (?P<status>.+?)\s*$")


def prepare(directory):
    config = configparser.ConfigParser()
    config.read(os.path.join(directory, "setup.cfg"))
    paths = [p for p in config.get("mutmut", "only_mutate").split("\n") if p.strip()]
    for path in paths:
        path = os.path.join(directory, path)
        with open(path, encoding="utf-8") as f:
            source = f.read()
        lines = source.splitlines(keepends=True)
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    # The header ends on the line before the first statement of the body.
                    header = item.body[0].lineno - 2
                    while not lines[header].rstrip().endswith(":"):
                        header -= 1
                    if "pragma: no mutate" not in lines[header]:
                        lines[header] = lines[header].rstrip("\n") + PRAGMA + "\n"
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(lines))


def module_of(function_name):
    """`keras_vit.layers.patch_encoder.xǁPatchEncoderǁcall` → `keras_vit.layers.patch_encoder`."""
    return function_name.rsplit(".", 1)[0]


def score(path):
    counts = collections.defaultdict(collections.Counter)
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = LINE.match(line)
            if match and match["status"] != "not checked":
                counts[module_of(match["name"])][match["status"]] += 1
    print("| module | killed | survived | timeout | no tests | score |")
    print("|---|---|---|---|---|---|")
    total = collections.Counter()
    for module in sorted(counts):
        total.update(counts[module])
        print(_row(module, counts[module]))
    print(_row("all", total))


def _row(name, c):
    killed = c["killed"] + c["timeout"]
    judged = killed + c["survived"] + c["suspicious"] + c["segfault"]
    value = f"{killed / judged:.1%}" if judged else "-"
    return f"| {name} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} | {value} |"


if __name__ == "__main__":
    command, argument = sys.argv[1:3]
    {"prepare": prepare, "score": score}[command](argument)
