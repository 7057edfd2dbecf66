r"""Shrinking a keras_hub language model: a byte-level Llama on the Python standard library, under half its FLOPs.

    python experiments/stdlib_lm.py                       # the docs/results.md table: 3 seeds, 8 min of CPU
    python experiments/stdlib_lm.py --seeds 0 --pretrain_steps 2000 --search_steps 2000 --recovery_steps 1000 \
        --layers 4 --hidden 128 --length 256              # larger, on a GPU

Not a figs-search config (it has no `get_config`): a standalone script, the
README's worked example "Shrinking a keras_hub language model".

The model is a keras_hub `LlamaBackbone` (grouped-query attention: 4 query
heads reading 2 key/value heads, RMS norms, gated MLPs, rotary embeddings)
over bytes (vocabulary 257: the 256 byte values and one end-of-file token), a
linear head to the next byte's logits. The text is the `.py` files of this
Python's standard library (`sysconfig.get_paths()["stdlib"]`, no download),
split by file: a file is validation data when the SHA-1 of its relative path
falls in the first `--validation_percent` % of the hash range, so the split is
the same on every machine with the same Python.

Per seed:

1. the supernet is trained `--pretrain_steps` (Adam, constant learning rate);
2. FiGS: `figs_tf.wrap(lm, cost="flops", exclude=KEPT_OUT)` searches
   key/value groups, query slots and MLP widths (the residual stream kept) for `--search_steps` under `figs_tf.BudgetController`
   with a target of `--target` × the supernet's FLOPs per sequence of
   `--length` tokens (the attention products QKᵀ and AV counted over every
   pair, so FLOPs per token depend on the length); `figs_tf.slim` cuts the
   model, which then fine-tunes its inherited weights for `--recovery_steps`;
3. the supernet from step 1 trains `--search_steps + --recovery_steps` more
   steps (the same batches);
4. uniform: one multiplier r for every block, round(r × query slots) query
   heads per key/value group (every key/value head kept) and round(r × MLP
   units), the largest r whose FLOPs are within the same target;
   `figs_tf.slim(lm, architecture=...)` cuts it from the supernet of step 1
   (keeping the query slots and units of largest kernel L1 norm), which then
   trains the same `--search_steps + --recovery_steps` steps;
5. with `--searched_widths_baseline`, also FiGS's exported widths cut from
   the supernet of step 1 the way the uniform model is, trained the same
   steps: the searched architecture without the search's training path.

It reports validation bits per byte (the mean of −log₂ p(next byte) over
`--validation_windows` windows spread evenly over the validation files) of
the three, FLOPs per token and parameters, and inference tokens per second
(forward passes over a batch of `--length`-token sequences, interleaved to
share the machine's load fairly) of each model against the supernet. Then it
puts the slim model of the first seed back into a `keras_hub.models.LlamaCausalLM`
(`figs_tf.keras_hub_backbone`) and generates from a prompt.
"""

import argparse
import hashlib
import logging
import os
import sys
import sysconfig
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import figs_tf  # noqa: E402

END_OF_FILE = 256  # the one token after the byte values
VOCABULARY = 257


# --- data: the standard library's own source, split by file ---

def stdlib_files(root=None):
    """Relative paths ('/'-separated, sorted) of the standard library's .py files, site packages left out."""
    root = root or sysconfig.get_paths()["stdlib"]
    paths = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in ("site-packages", "dist-packages", "__pycache__"))
        paths.extend(os.path.relpath(os.path.join(directory, f), root).replace(os.sep, "/")
                     for f in files if f.endswith(".py"))
    if not paths:
        raise ValueError(f"No .py files under {root!r}: give --stdlib the directory of a Python standard library.")
    return sorted(paths)


def is_validation(relative_path, percent):
    """A file is validation data when its path's SHA-1 lands in the first `percent` % of the hash range."""
    digest = int.from_bytes(hashlib.sha1(relative_path.encode("utf-8")).digest()[:8], "big")
    return digest % 10_000 < percent * 100


def split_by_file(paths, percent):
    """(train paths, validation paths): every file wholly on one side."""
    validation = [p for p in paths if is_validation(p, percent)]
    train = [p for p in paths if not is_validation(p, percent)]
    return train, validation


def byte_stream(root, paths, max_bytes=None):
    """The files' bytes, each followed by END_OF_FILE, as one int32 array (at most `max_bytes` tokens)."""
    pieces, total = [], 0
    for path in paths:
        with open(os.path.join(root, path), "rb") as f:
            data = np.frombuffer(f.read(), np.uint8).astype(np.int32)
        pieces.append(np.append(data, END_OF_FILE))
        total += len(data) + 1
        if max_bytes is not None and total >= max_bytes:
            break
    stream = np.concatenate(pieces)
    return stream[:max_bytes] if max_bytes is not None else stream


def random_windows(stream, count, length, seed):
    """`count` windows of `length` + 1 tokens at random places: (inputs, next-token targets)."""
    starts = np.random.default_rng(seed).integers(0, len(stream) - length - 1, count)
    windows = stream[starts[:, None] + np.arange(length + 1)]
    return as_inputs(windows[:, :-1]), windows[:, 1:]


def even_windows(stream, count, length):
    """`count` windows spread evenly over the stream (the validation set: the same every run)."""
    starts = np.linspace(0, len(stream) - length - 1, count).astype(np.int64)
    windows = stream[starts[:, None] + np.arange(length + 1)]
    return as_inputs(windows[:, :-1]), windows[:, 1:]


def as_inputs(token_ids):
    return {"token_ids": token_ids.astype("int32"), "padding_mask": np.ones(token_ids.shape, "int32")}


# --- the model ---

def language_model(args):
    """(backbone, lm): a keras_hub LlamaBackbone, and the language model: the backbone at `args.length` tokens
    under a byte head.

    FLOPs need a static length, so the backbone's layers are called on fixed-length inputs (the
    same layers and weights). The head is a Dense layer (no bias), which counts as any Dense:
    figs_tf refuses the embedding's `reverse=True` call inside a searched model. The backbone's
    own output table (`token_embedding.reverse_embeddings`, Llama's untied default) is unused in
    training; `generate_sample` copies the head's kernel into the slim model's before generating.
    """
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY, num_layers=args.layers, num_query_heads=args.query_heads,
        num_key_value_heads=args.kv_heads, hidden_dim=args.hidden, intermediate_dim=args.mlp)
    inputs = {name: keras.Input((args.length,), dtype="int32", name=name) for name in backbone.input}
    traced = keras.models.clone_model(backbone, input_tensors=inputs, clone_function=lambda layer: layer)
    logits = keras.layers.Dense(VOCABULARY, use_bias=False, name="lm_head")(traced(inputs))
    return backbone, keras.Model(inputs, logits, name="stdlib_lm")


def compile_for_training(model, args):
    model.compile(optimizer=keras.optimizers.Adam(args.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)


def bits_per_byte(model, inputs, targets, batch=64):
    """Mean −log₂ p(target) over the targets that are bytes (the end-of-file token is not a byte)."""
    total, count = 0.0, 0
    for start in range(0, len(targets), batch):
        chunk = {k: v[start:start + batch] for k, v in inputs.items()}
        logits = keras.ops.convert_to_numpy(model.predict_on_batch(chunk)).astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        want = targets[start:start + batch]
        picked = np.take_along_axis(log_probs, want[..., None], axis=-1)[..., 0]
        total -= picked[want < END_OF_FILE].sum()
        count += int((want < END_OF_FILE).sum())
    return total / count / np.log(2.0)


# The residual stream stays out of search, as in the runs docs/results.md reports: the Dense head reads it, so
# figs_tf would search it through the RMS norms, and with it searched every query slot is kept.
KEPT_OUT = ("token_embedding",)


def uniform_architecture(template, model, target, units, slots, groups):
    """One multiplier r in every block: round(r·`slots`) (≥ 1) query heads per key/value group, all `groups`
    key/value groups kept, round(r·`units`) (≥ 1) MLP units; the largest r (in steps of 1 / `units`) whose
    FLOPs are at most `target`. `template`: an exported architecture of `model` (its layer names; the widths
    that are not searched). Returns (architecture, r)."""
    def architecture(k):
        widths = dict(template)
        for name in template:
            if name.endswith((".feedforward_gate_dense", ".feedforward_intermediate_dense")):
                widths[name] = k
            elif name.endswith("/query_slots"):
                widths[name] = max(1, int(np.floor(k / units * slots + 0.5)))
            elif name.endswith("/kv_groups"):
                widths[name] = groups
        return widths

    def flops(k):
        return figs_tf.slimming.network_from_architecture(model, architecture(k), choose_channels=False,
                                                         exclude=KEPT_OUT).cost("flops")

    if flops(1) > target:
        raise ValueError(f"No uniform multiplier reaches {target:,.0f} FLOPs: one MLP unit per block costs more.")
    low, high = 1, units  # the largest k with flops(k) <= target (flops grows with k)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if flops(middle) <= target else (low, middle - 1)
    return architecture(low), low / units


def tokens_per_second(models, inputs, repeats):
    """Inference throughput of each model on `inputs` (one batch): the median of `repeats` timed forward passes,
    the models taking turns so that a shared machine's load falls on all of them alike."""
    for model in models:
        model.predict_on_batch(inputs)  # traced once, outside the timing
    times = [[] for _ in models]
    tokens = inputs["token_ids"].size
    for _ in range(repeats):
        for model, spent in zip(models, times):
            start = time.perf_counter()
            keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
            spent.append(time.perf_counter() - start)
    return [tokens / float(np.median(spent)) for spent in times]


class Data:
    """The split, its streams and the validation windows."""

    def __init__(self, args):
        self.root = args.stdlib or sysconfig.get_paths()["stdlib"]
        self.train_paths, self.validation_paths = split_by_file(stdlib_files(self.root), args.validation_percent)
        self.train = byte_stream(self.root, self.train_paths, args.max_train_bytes)
        self.validation = byte_stream(self.root, self.validation_paths)
        self.validation_inputs, self.validation_targets = even_windows(self.validation, args.validation_windows,
                                                                      args.length)

    def batches(self, steps, args, seed):
        """`steps` batches of random training windows (the same ones for every model given the same seed)."""
        return random_windows(self.train, steps * args.batch, args.length, seed)


def run_seed(args, data, seed):
    """The pipeline for one seed; returns a dict of the measured numbers and the models."""
    keras.utils.set_random_seed(seed)
    backbone, lm = language_model(args)
    result = {"seed": seed, "backbone": backbone, "lm": lm}
    compile_for_training(lm, args)
    x, y = data.batches(args.pretrain_steps, args, seed=1000 * seed + 1)
    lm.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    pretrained = lm.get_weights()
    bpb = lambda model: bits_per_byte(model, data.validation_inputs, data.validation_targets)  # noqa: E731
    result["pretrained_bpb"] = bpb(lm)

    search = figs_tf.wrap(lm, cost="flops", seed=seed, exclude=KEPT_OUT)
    supernet_flops = figs_tf.supernet_cost(search, "flops")
    target = args.target * supernet_flops
    template = figs_tf.export_architecture(search)
    uniform_arch, multiplier = uniform_architecture(template, lm, target, args.mlp, args.query_heads // args.kv_heads,
                                                    args.kv_heads)
    # L1-largest channels, pretrained weights
    uniform = figs_tf.slim(lm, architecture=uniform_arch, name="uniform", exclude=KEPT_OUT)
    result.update(supernet_flops=supernet_flops, target=target, multiplier=multiplier, uniform=uniform,
                  uniform_architecture=uniform_arch)

    after_x, after_y = data.batches(args.search_steps + args.recovery_steps, args, seed=1000 * seed + 2)
    compile_for_training(search, args)
    controller = figs_tf.BudgetController(target=target)
    search.fit({k: v[:args.search_steps * args.batch] for k, v in after_x.items()},
               after_y[:args.search_steps * args.batch], batch_size=args.batch, epochs=1, verbose=0,
               callbacks=[controller])
    network = figs_tf.exported_network(search)
    slim = figs_tf.slim(search)
    check = {k: v[:8] for k, v in data.validation_inputs.items()}
    searched = keras.ops.convert_to_numpy(search(check, training=False))  # the exported network, inherited weights
    slimmed = keras.ops.convert_to_numpy(slim(check))
    result.update(search=search, slim=slim, controller=controller, architecture=network.architecture(),
                  exported_flops=network.cost("flops"), slim_flops=figs_tf.count(slim, "flops"),
                  slim_params=slim.count_params(), check_inputs=check, search_outputs=searched,
                  slim_outputs_before_recovery=slimmed, slim_vs_search=float(np.abs(slimmed - searched).max()),
                  search_scale=float(np.abs(searched).max()), slim_bpb_before_recovery=bpb(slim))
    compile_for_training(slim, args)
    slim.fit({k: v[args.search_steps * args.batch:] for k, v in after_x.items()},
             after_y[args.search_steps * args.batch:], batch_size=args.batch, epochs=1, verbose=0)
    result["slim_bpb"] = bpb(slim)

    lm.set_weights(pretrained)  # the supernet from step 1 trains on as many more steps
    if args.searched_widths_baseline:  # the FiGS widths, trained as the uniform model is
        searched_widths = figs_tf.slim(lm, architecture=network.architecture(), name="searched_widths",
                                       exclude=KEPT_OUT)
    lm.fit(after_x, after_y, batch_size=args.batch, epochs=1, verbose=0)
    result["supernet_bpb"] = bpb(lm)
    compile_for_training(uniform, args)
    uniform.fit(after_x, after_y, batch_size=args.batch, epochs=1, verbose=0)
    result.update(uniform_bpb=bpb(uniform), uniform_flops=figs_tf.count(uniform, "flops"),
                  uniform_params=uniform.count_params(), supernet_params=lm.count_params())
    if args.searched_widths_baseline:
        compile_for_training(searched_widths, args)
        searched_widths.fit(after_x, after_y, batch_size=args.batch, epochs=1, verbose=0)
        result.update(searched_widths=searched_widths, searched_widths_bpb=bpb(searched_widths))
    speed_inputs = {k: v[:args.speed_batch] for k, v in data.validation_inputs.items()}
    if len(speed_inputs["token_ids"]) < args.speed_batch:
        speed_inputs = {k: np.resize(v, (args.speed_batch, args.length)) for k, v in speed_inputs.items()}
    result["supernet_tps"], result["slim_tps"], result["uniform_tps"] = tokens_per_second(
        [lm, slim, uniform], speed_inputs, args.speed_repeats)
    return result


def block_widths(result, args):
    """Per block: 'query heads/kv heads, MLP units' of the slim model."""
    architecture, rows = result["architecture"], []
    for b in range(args.layers):
        prefix = f"transformer_layer_{b}"
        groups = architecture[f"{prefix}.self_attention/kv_groups"]
        rows.append(f"{groups * architecture[f'{prefix}.self_attention/query_slots']}/{groups} "
                    f"{architecture[f'{prefix}.feedforward_gate_dense']}")
    return ", ".join(rows)


def generate_sample(result, prompt, new_tokens):
    """The slim model back in a LlamaCausalLM (its head's kernel as the backbone's output embedding): greedy text."""
    slim, backbone = result["slim"], result["backbone"]
    slim.get_layer("token_embedding").reverse_embeddings.assign(slim.get_layer("lm_head").kernel)
    causal_lm = keras_hub.models.LlamaCausalLM(backbone=figs_tf.keras_hub_backbone(slim, backbone), preprocessor=None)
    causal_lm.compile(sampler="greedy", jit_compile=False)
    data = np.frombuffer(prompt.encode("utf-8"), np.uint8).astype("int32")
    token_ids = np.zeros((1, len(data) + new_tokens), "int32")
    token_ids[0, :len(data)] = data
    padding_mask = np.zeros(token_ids.shape, bool)
    padding_mask[0, :len(data)] = True
    out = keras.ops.convert_to_numpy(causal_lm.generate({"token_ids": token_ids, "padding_mask": padding_mask},
                                                        stop_token_ids=None)["token_ids"])[0]
    return bytes(int(t) for t in out if t < END_OF_FILE).decode("utf-8", errors="replace")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--query_heads", type=int, default=4)
    parser.add_argument("--kv_heads", type=int, default=2)
    parser.add_argument("--mlp", type=int, default=192, help="gated MLP hidden units")
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence: the stated FLOPs length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam, constant")
    parser.add_argument("--pretrain_steps", type=int, default=200)
    parser.add_argument("--search_steps", type=int, default=150)
    parser.add_argument("--recovery_steps", type=int, default=100)
    parser.add_argument("--target", type=float, default=0.5, help="FLOPs budget, a fraction of the supernet's")
    parser.add_argument("--validation_percent", type=float, default=10.0)
    parser.add_argument("--validation_windows", type=int, default=256)
    parser.add_argument("--max_train_bytes", type=int, default=None, help="read only this much training text")
    parser.add_argument("--speed_batch", type=int, default=32)
    parser.add_argument("--speed_repeats", type=int, default=20)
    parser.add_argument("--stdlib", default=None, help="a standard library directory (default: this Python's)")
    parser.add_argument("--searched_widths_baseline", action="store_true",
                        help="also: FiGS's exported widths cut from the step-1 supernet as the uniform model is "
                             "(largest kernel L1 norm), trained the same steps")
    parser.add_argument("--prompt", default="def ", help="generated from by the first seed's slim model ('' = none)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # predict traces once per model: not worth a warning
    warnings.filterwarnings("ignore", message="Gradients do not exist for variables .*reverse_embeddings")
    start = time.time()
    data = Data(args)
    print(f"standard library {data.root}: {len(data.train_paths)} training files ({len(data.train):,} tokens), "
          f"{len(data.validation_paths)} validation files ({len(data.validation):,} tokens)")
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        result = run_seed(args, data, seed)
        results.append(result)
        length = args.length
        print(f"seed {seed}: supernet {result['supernet_flops'] / length:,.0f} FLOPs/token, target "
              f"{result['target'] / length:,.0f}; FiGS slim {result['slim_flops'] / length:,.0f} "
              f"(exported {result['exported_flops'] / length:,.0f}; blocks q/kv MLP: {block_widths(result, args)}), "
              f"uniform r={result['multiplier']:.3f} {result['uniform_flops'] / length:,.0f}; "
              f"slim vs search (inference) max |Δ| {result['slim_vs_search']:.1e} of {result['search_scale']:.1f}")
        print(f"  bits/byte: pretrained supernet {result['pretrained_bpb']:.3f}, supernet {result['supernet_bpb']:.3f}, "
              f"FiGS slim {result['slim_bpb']:.3f} (before recovery {result['slim_bpb_before_recovery']:.3f}), "
              f"uniform {result['uniform_bpb']:.3f}; tokens/s supernet {result['supernet_tps']:,.0f}, slim "
              f"{result['slim_tps']:,.0f}, uniform {result['uniform_tps']:,.0f}  [{time.time() - start:.0f} s]")
        if "searched_widths_bpb" in result:
            print(f"  FiGS widths cut from the step-1 supernet, trained as the uniform model: "
                  f"{result['searched_widths_bpb']:.3f} bits/byte")
        sys.stdout.flush()
    print_table(results, args)
    if args.prompt:
        print(f"\nLlamaCausalLM on the seed-{results[0]['seed']} slim backbone, greedy from {args.prompt!r}:")
        print(generate_sample(results[0], args.prompt, 64))
    print(f"wall time {time.time() - start:.0f} s")


def print_table(results, args):
    def mean_sd(key, scale=1.0):
        values = np.array([r[key] for r in results], np.float64) / scale
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    def mean(key, scale=1.0):
        return f"{np.mean([r[key] for r in results]) / scale:,.0f}"

    first = results[0]
    print(f"\n| model | FLOPs/token (T={args.length}) | params | val bits/byte (mean ± sd, {len(results)} seeds) "
          "| tokens/s (inference) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| supernet | {first['supernet_flops'] / args.length:,.0f} | {first['supernet_params']:,} | "
          f"{mean_sd('supernet_bpb')} | {mean('supernet_tps')} |")
    print(f"| FiGS slim, recovered | {mean('slim_flops', args.length)} | {mean('slim_params')} | "
          f"{mean_sd('slim_bpb')} | {mean('slim_tps')} |")
    print(f"| FiGS slim, before recovery | | | {mean_sd('slim_bpb_before_recovery')} | |")
    print(f"| uniform width | {mean('uniform_flops', args.length)} | {mean('uniform_params')} | "
          f"{mean_sd('uniform_bpb')} | {mean('uniform_tps')} |")


if __name__ == "__main__":
    main()
