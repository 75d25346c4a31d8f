"""Are the explanations faithful? A deletion test on a small ViT trained on MNIST.

A small ViT (28×28, patch 4: 7×7 patches) is trained on MNIST from
$KERAS_VIT_DATA/mnist. For each test image and each method (LeGrad, attention
rollout, last-layer class-token attention, and random), the top 20 % of the
patches by the method's ranking are zeroed, and the drop of the true-class
probability is measured. A faithful method removes the evidence the model
uses, so its drop should clearly exceed that of removing as many random
patches. Also measured: the share of each map's mass that falls inside each
digit's bounding box, against the box's share of the image (what a uniform
map would put there).

Usage:
    KERAS_VIT_DATA=path/to/data nice -n 10 python benchmarks/explain_faithfulness.py \
        [--train-size 60000] [--epochs 8] [--test-size 500] [--out results.json]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

# name → (explain method, options). "legrad": the default, one backward pass
# from the model's logit, summed over the last two blocks; "legrad_last": the
# last block only; "legrad_all": all blocks; "..._layer_logits": the paper's
# per-block logits (the head applied to each block's output).
METHODS = {
    "legrad": ("legrad", {}),
    "legrad_last": ("legrad", {"layers": -1}),
    "legrad_layer_logits": ("legrad", {"layer_logits": True}),
    "legrad_all": ("legrad", {"layers": "all"}),
    "legrad_all_layer_logits": ("legrad", {"layers": "all", "layer_logits": True}),
    "rollout": ("rollout", {}),
    "attention": ("attention", {}),
    "random": (None, {}),
}


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def load_mnist(data_dir, split, normalize=False):
    """MNIST as float32 `(N, 28, 28, 1)` in [0, 1], or standardised (then 0 is the mean pixel)."""
    path = os.path.join(data_dir, "mnist", f"{split}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"MNIST not found at {path!r}; set KERAS_VIT_DATA to the datasets folder")
    with np.load(path) as data:
        x = (data["x"].astype("float32") / 255.0)[..., None]
        if normalize:
            x = (x - MNIST_MEAN) / MNIST_STD
        return x, data["y"].astype("int64")


MODEL_CONFIG = {"patch_size": 4, "hidden_dim": 48, "depth": 3, "num_heads": 3, "mlp_dim": 96}


def train_model(
    data_dir, train_size=60000, epochs=8, seed=0, verbose=2, normalize=False, jit_compile=False, **overrides
):
    """A small ViT (`MODEL_CONFIG`: 7×7 patches of 4×4) trained on the first `train_size` MNIST images.

    `jit_compile` is passed to `compile` (the report's figures were measured with False, TensorFlow's
    graph mode; True, XLA, trains about twice as fast on CPU)."""
    import keras

    from keras_vit.applications import VisionTransformer

    keras.utils.set_random_seed(seed)
    x, y = load_mnist(data_dir, "train", normalize)
    x, y = x[:train_size], y[:train_size]
    config = {**MODEL_CONFIG, **overrides}
    model = VisionTransformer(input_shape=(28, 28, 1), classes=10, name="mnist_vit", **config)
    steps = epochs * int(np.ceil(len(x) / 128))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.01, warmup_target=2e-3, warmup_steps=steps // 10
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=verbose)
    return model


def bounding_box_share(heatmaps, images, threshold=0.0):
    """Per image: (share of the heatmap's mass inside the digit's box, the box's share of the image)."""
    inside, uniform = [], []
    for heat, image in zip(heatmaps, images[..., 0]):
        rows, cols = np.nonzero(image > image.min() + threshold)
        box = np.zeros(image.shape, bool)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        inside.append(float(heat[box].sum() / max(heat.sum(), 1e-12)))
        uniform.append(float(box.mean()))
    return np.asarray(inside), np.asarray(uniform)


def evaluate(model, x, y, fraction=0.2, seed=0, random_draws=5):
    """The deletion test and the bounding-box share; returns a dict of numbers."""
    from keras_vit import explain
    from keras_vit.explain.graph import upsample_maps

    probs = explain.class_probabilities(model, x)
    results = {
        "images": int(len(x)),
        "accuracy": float((probs.argmax(-1) == y).mean()),
        "p_true": float(probs[np.arange(len(y)), y].mean()),
        "fraction_removed": fraction,
        "drop": {},
        "seconds": {},
    }
    rng = np.random.default_rng(seed)
    grids = {}
    for method, (name, options) in METHODS.items():
        start = time.time()
        if name is None:
            drops = [
                explain.deletion_test(model, x, y, rng.random((len(x), 7, 7)), fraction) for _ in range(random_draws)
            ]
            drop = np.mean(drops, axis=0)
        else:
            if name == "legrad":
                grids[method] = explain.legrad(model, x, class_index=y, upsample=False, **options)
            else:
                grids[method] = explain.explain(model, x, method=name, upsample=False, **options)
            drop = explain.deletion_test(model, x, y, grids[method], fraction)
        results["drop"][method] = float(drop.mean())
        results["seconds"][method] = round(time.time() - start, 1)
    results["mass_in_box"], results["images_with_mass_above_box_share"] = {}, {}
    for method in grids:
        heat = upsample_maps(grids[method], x.shape[1:3])
        inside, uniform = bounding_box_share(heat, x)
        results["mass_in_box"][method] = float(inside.mean())
        results["images_with_mass_above_box_share"][method] = float((inside > uniform).mean())
        if method == "legrad":
            results["legrad_mass_in_box_by_class"] = {
                str(c): [float(inside[y == c].mean()), float(uniform[y == c].mean())] for c in np.unique(y)
            }
    results["box_share_of_image"] = float(uniform.mean())
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normalize", action="store_true", help="standardise the pixels (zeroing = the mean pixel)")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    parser.add_argument("--figure", default=None, help="write a LeGrad and rollout figure of 4 test digits here")
    parser.add_argument("--save-model", default=None, help="save the trained model (.keras)")
    parser.add_argument("--load-model", default=None, help="evaluate this .keras model instead of training one")
    args = parser.parse_args(argv)
    data_dir = os.environ.get("KERAS_VIT_DATA")
    if not data_dir:
        print("Set KERAS_VIT_DATA to the folder holding mnist/train.npz and mnist/test.npz", file=sys.stderr)
        return 2
    start = time.time()
    if args.load_model:
        import keras

        import keras_vit.applications  # noqa: F401 (registers the layers)

        model = keras.saving.load_model(args.load_model)
    else:
        model = train_model(data_dir, args.train_size, args.epochs, args.seed, normalize=args.normalize)
        if args.save_model:
            model.save(args.save_model)
    train_seconds = time.time() - start
    x, y = load_mnist(data_dir, "test", args.normalize)
    x, y = x[: args.test_size], y[: args.test_size]
    results = evaluate(model, x, y, args.fraction, args.seed)
    results["normalize"] = args.normalize
    if args.load_model:
        results["model"] = os.path.basename(args.load_model)
    else:
        results.update(train_size=args.train_size, epochs=args.epochs, train_seconds=round(train_seconds, 1))
    print(json.dumps(results, indent=2))
    print(f"\nTop {args.fraction:.0%} of the 7×7 patches zeroed, mean drop of p(true class) over {len(x)} test images:")
    for method in METHODS:
        print(f"  {method:24s} {results['drop'][method]:.3f}")
    print(f"Mass inside the digit's box (box share of the image: {results['box_share_of_image']:.3f}):")
    for method, mass in results["mass_in_box"].items():
        above = results["images_with_mass_above_box_share"][method]
        print(f"  {method:24s} {mass:.3f} (above the box share for {above:.1%} of the images)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    if args.figure:
        from keras_vit.explain import save_explanation_figure

        save_explanation_figure(model, x[:4], args.figure, method=["legrad", "rollout"], labels=y[:4])
    return 0


if __name__ == "__main__":
    sys.exit(main())
