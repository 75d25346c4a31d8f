"""Benchmark 6a: a Transformer trained from scratch on Multi30k de→en, sacreBLEU on test_2016_flickr.

Trains a shared-BPE Transformer for `--epochs` epochs or at most `--minutes`
of wall time (tokenizer training included), saving the whole translator and
the weights of each epoch (`--epoch-weights`). Then, as Vaswani et al. (2017),
Sec. 6.1: the average of the last N epoch checkpoints, N chosen by the
validation loss (`--average-max`); the length penalty α chosen by BLEU on
(the first `--val-sentences` of) `val` among `--alpha-grid`; and with those,
test_2016_flickr translated with beam search and scored with sacreBLEU
(detokenized, cased): BLEU, its signature, the brevity penalty and the
hypothesis/reference length ratio. Writes a JSON report with the
configuration, epochs, wall and CPU times, machine load (`os.getloadavg`),
the selection on `val` and the test scores.

    KERAS_VIT_DATA=path/to/data nice -n 10 python benchmarks/translation_multi30k.py --out report.json
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("KERAS_VIT_DATA", "../shared/data"), "multi30k"))
    p.add_argument("--minutes", type=float, default=60.0, help="training wall-time budget")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--vocabulary-size", type=int, default=6000)
    p.add_argument("--num-layers", type=int, default=3)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--mlp-dim", type=int, default=512)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--tokens-per-batch", type=int, default=2000)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--learning-rate-scale", type=float, default=0.5)
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument(
        "--alpha-grid", default="0.6,1.0,1.4,1.8,2.2", help="length penalties α tried on val (comma-separated)"
    )
    p.add_argument("--val-sentences", type=int, default=400, help="val sentences that choose α (0: all 1,014)")
    p.add_argument("--average-max", type=int, default=5, help="average of the last N ≤ this epoch checkpoints")
    p.add_argument("--checkpoint", default="multi30k_translator.keras")
    p.add_argument("--out", default="translation_multi30k.json")
    p.add_argument(
        "--epoch-weights",
        default="multi30k_epochs",
        help="folder of the weights after each epoch (epoch-N.weights.h5), for checkpoint averaging",
    )
    p.add_argument("--train-only", action="store_true", help="stop after training (score later with --evaluate-only)")
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="skip training: score --checkpoint and add the BLEU to the report in --out",
    )
    args = p.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"Multi30k not found at {args.data!r}; set KERAS_VIT_DATA", file=sys.stderr)
        return 1

    import keras

    keras.utils.set_random_seed(0)
    if args.evaluate_only:
        import keras_vit.applications  # noqa: F401 (registers the layers)

        report = {}
        if os.path.exists(args.out):
            with open(args.out) as f:
                report = json.load(f)
        model = keras.saving.load_model(args.checkpoint)
    else:
        report, model = _train(args)
        with open(args.out, "w") as f:  # kept even if translation fails
            json.dump(report, f, indent=1)
        if args.train_only:
            return 0
    _evaluate(args, model, report)
    return 0


def _average_last(model, paths):
    """Sets `model`'s weights to the mean of the weights saved in `paths` (Vaswani et al., Sec. 6.1)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    total = None
    for path in paths:
        model.load_weights(path)
        weights = [w.astype("float64") for w in model.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    model.set_weights([(t / len(paths)).astype("float32") for t in total])


def _epoch_files(folder):
    found = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        stem = name[len("epoch-") : -len(".weights.h5")]
        if name.startswith("epoch-") and name.endswith(".weights.h5") and stem.isdigit():
            found.append((int(stem), os.path.join(folder, name)))
    return [path for _, path in sorted(found)]


def _evaluate(args, model, report):
    from keras_vit.translation import TokenBatches, encode_pairs, evaluate_bleu, length_ratio, load_multi30k

    def log(text):
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    t_start, cpu_start = time.time(), time.process_time()
    tokenizer = model.source_tokenizer
    val_sources, val_references = load_multi30k(args.data, "val")
    vsrc, vtgt = encode_pairs(tokenizer, val_sources, val_references)
    val_batches = TokenBatches(
        vsrc, vtgt, args.tokens_per_batch, shuffle=False, pad_id=model.padding_id, fixed_shapes=bool(model.jit_compile)
    )
    # 1. N: the number of last epoch checkpoints averaged, by the validation loss (teacher forcing).
    files = _epoch_files(args.epoch_weights)
    selection = {"epoch_files": [os.path.basename(f) for f in files], "val_loss_by_n": {}}
    if files:
        for n in range(1, min(args.average_max, len(files)) + 1):
            _average_last(model, files[-n:])
            loss = model.evaluate(val_batches.for_fit(), verbose=0, return_dict=True)["loss"]
            selection["val_loss_by_n"][n] = float(loss)
            log(f"average of the last {n} epoch(s): val loss {loss:.4f}")
        best_n = min(selection["val_loss_by_n"], key=selection["val_loss_by_n"].get)
        _average_last(model, files[-best_n:])
        selection["averaged_last_n"] = best_n
    else:
        log(f"no epoch checkpoints in {args.epoch_weights!r}: the checkpoint's weights as they are")
    # 2. α, by BLEU on val.
    count = args.val_sentences or len(val_sources)
    selection["alpha_val_sentences"] = count
    selection["val_by_alpha"] = {}
    for alpha in [float(a) for a in args.alpha_grid.split(",")]:
        score, _ = evaluate_bleu(
            model, val_sources[:count], val_references[:count], beam_size=args.beam_size, length_penalty=alpha
        )
        selection["val_by_alpha"][alpha] = {"bleu": score.score, "bp": score.bp, "ratio": length_ratio(score)}
        log(f"val α={alpha}: BLEU {score.score:.2f} BP {score.bp:.3f} ratio {length_ratio(score):.3f}")
    alpha = max(selection["val_by_alpha"], key=lambda a: selection["val_by_alpha"][a]["bleu"])
    selection["length_penalty"] = alpha
    report["selection_on_val"] = selection
    # 3. The test set, with both chosen.
    sources, references = load_multi30k(args.data, "test_2016_flickr")
    t0 = time.time()
    score, hyps = evaluate_bleu(model, sources, references, beam_size=args.beam_size, length_penalty=alpha)
    report["test_bleu"] = score.score
    report["test_bleu_line"] = score.format(signature=score.signature)
    report["test_bleu_signature"] = score.signature
    report["test_brevity_penalty"] = score.bp
    report["test_length_ratio"] = length_ratio(score)
    report["translate_wall_s"] = time.time() - t0
    report["evaluation_wall_s"] = time.time() - t_start
    report["evaluation_cpu_s"] = time.process_time() - cpu_start
    report["examples"] = [(s, h, r) for s, h, r in list(zip(sources, hyps, references))[:5]]
    report["load_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    log(report["test_bleu_line"])
    print(json.dumps(report, indent=1))


def _train(args):
    import keras

    from keras_vit.translation import load_multi30k, train_translator

    report = {"config": vars(args), "load_before": os.getloadavg(), "cpu_count": os.cpu_count()}
    os.makedirs(args.epoch_weights, exist_ok=True)
    epoch_seconds = []

    class EpochWeights(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.time() - self.t0)
            self.model.save_weights(os.path.join(args.epoch_weights, f"epoch-{epoch + 1}.weights.h5"))

    start = time.time()
    train = load_multi30k(args.data, "train")
    val = load_multi30k(args.data, "val")
    model, history = train_translator(
        train,
        val,
        vocabulary_size=args.vocabulary_size,
        epochs=args.epochs,
        tokens_per_batch=args.tokens_per_batch,
        warmup_steps=args.warmup_steps,
        learning_rate_scale=args.learning_rate_scale,
        time_limit=args.minutes * 60,
        checkpoint=args.checkpoint,
        verbose=2,
        callbacks=[EpochWeights()],
        num_layers=args.num_layers,
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        mlp_dim=args.mlp_dim,
        dropout=args.dropout,
    )
    report["train_wall_s"] = time.time() - start
    report["train_cpu_s"] = time.process_time()
    report["epochs_run"] = len(history.history.get("loss", []))
    report["epoch_seconds"] = epoch_seconds
    report["history"] = {k: [float(x) for x in v] for k, v in history.history.items()}
    report["parameters"] = model.count_params()
    report["jit_compile"] = model.jit_compile
    report["load_after_training"] = os.getloadavg()
    model.save(args.checkpoint)
    print(json.dumps(report, indent=1), flush=True)
    return report, model


if __name__ == "__main__":
    sys.exit(main())
