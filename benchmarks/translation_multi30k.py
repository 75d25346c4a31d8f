"""Benchmark 6a: a Transformer trained from scratch on Multi30k de→en, sacreBLEU on test_2016_flickr.

Trains a shared-BPE Transformer for at most `--minutes` of wall time (tokenizer
training included), saving the whole translator after each epoch, then
translates test_2016_flickr with beam search and scores it with sacreBLEU
(detokenized, cased). Writes a JSON report with the configuration, epochs,
wall times, machine load (`os.getloadavg`) and BLEU.

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
    p.add_argument("--length-penalty", type=float, default=0.6)
    p.add_argument("--checkpoint", default="multi30k_translator.keras")
    p.add_argument("--out", default="translation_multi30k.json")
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

    from keras_vit.translation import evaluate_bleu, load_multi30k

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
    sources, references = load_multi30k(args.data, "test_2016_flickr")
    t0 = time.time()
    score, hyps = evaluate_bleu(
        model, sources, references, beam_size=args.beam_size, length_penalty=args.length_penalty
    )
    report["test_bleu"] = score.score
    report["test_bleu_signature"] = str(score)
    report["translate_wall_s"] = time.time() - t0
    report["examples"] = [(s, h, r) for s, h, r in list(zip(sources, hyps, references))[:5]]
    report["load_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))
    return 0


def _train(args):
    from keras_vit.translation import load_multi30k, train_translator

    report = {"config": vars(args), "load_before": os.getloadavg(), "cpu_count": os.cpu_count()}
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
        num_layers=args.num_layers,
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        mlp_dim=args.mlp_dim,
        dropout=args.dropout,
    )
    report["train_wall_s"] = time.time() - start
    report["train_cpu_s"] = time.process_time()
    report["epochs_run"] = len(history.history.get("loss", []))
    report["history"] = {k: [float(x) for x in v] for k, v in history.history.items()}
    report["parameters"] = model.count_params()
    report["load_after_training"] = os.getloadavg()
    model.save(args.checkpoint)
    print(json.dumps(report, indent=1), flush=True)
    return report, model


if __name__ == "__main__":
    sys.exit(main())
