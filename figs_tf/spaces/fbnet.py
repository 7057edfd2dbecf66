"""The FBNet search space (Wu et al. 2019) as FiGS supernets, and the published FBNet-A/B/C.

Every searchable layer holds all candidate operators of its set in parallel
and sums their outputs (FBNet's additive aggregator); FiGS's reduced set is
{k3_e6, k5_e6, skip}. The macro-architecture is read off the authors'
released model definitions; structure, residuals, every choice left open and
the counts checked against the published FBNet-A/B/C: docs/spaces.md. Uses
`keras.layers` only.

Example:

    supernet = fbnet.fbnet_supernet()                                  # FiGS-FBNet, 224x224x3
    search = figs_tf.wrap(supernet, cost="flops", strength=2e-9)       # FiGS-FBNet-B's λ
    retrain = figs_tf.build_from_architecture(supernet, figs_tf.export_architecture(search))
    model_b = fbnet.published_fbnet("b")                               # FBNet-B, 291.0M MAdds
    tiny = fbnet.fashion_mnist_supernet()                              # 28x28x1, 10 classes
"""

import re

import keras

STEM_WIDTH = 16
STAGE_WIDTHS = (16, 24, 32, 64, 112, 184, 352)
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
HEAD_WIDTH = 1984

# name -> (kernel size, expansion ratio, groups of the 1x1 projection); None: the identity.
OPERATORS = {
    "k3_e1": (3, 1, 1), "k3_e1_g2": (3, 1, 2), "k3_e3": (3, 3, 1), "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1), "k5_e1_g2": (5, 1, 2), "k5_e3": (5, 3, 1), "k5_e6": (5, 6, 1),
    "skip": None,
}
OP_SETS = {
    "reduced": ("k3_e6", "k5_e6", "skip"),  # FiGS-FBNet (Chaudhuri et al. 2020, Sec. 3.3)
    "no_group": ("k3_e1", "k3_e3", "k3_e6", "k5_e1", "k5_e3", "k5_e6", "skip"),
    "original": ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6",
                 "skip"),  # FBNet (Wu et al. 2019, Sec. 4.1)
}

# Per-layer operators of the published models, stage by stage, from the authors'
# released definitions: facebookresearch/mobile-vision,
# mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnet.py ("fbnet_a", "fbnet_b",
# "fbnet_c"; their "ir_k5_g2" with pwl_groups=2 is our "k5_e1_g2").
FBNET_A = ("skip",
           "k3_e3", "k3_e1", "skip", "skip",
           "k5_e6", "k3_e3", "k5_e1", "k3_e3",
           "k5_e6", "k5_e3", "k5_e1_g2", "k5_e6",
           "k3_e6", "k5_e1_g2", "k5_e3", "k3_e1_g2",
           "k5_e6", "k5_e6", "k5_e3", "k5_e6",
           "k5_e6")
FBNET_B = ("k3_e1",
           "k3_e6", "k5_e1", "k3_e1", "k3_e1",
           "k5_e6", "k5_e3", "k3_e6", "k5_e6",
           "k5_e6", "k5_e6", "skip", "k5_e3",
           "k5_e6", "k3_e1", "k5_e1", "k5_e3",
           "k5_e6", "k5_e1", "k5_e6", "k5_e6",
           "k3_e6")
FBNET_C = ("k3_e1",
           "k3_e6", "skip", "k3_e1", "k3_e1",
           "k5_e6", "k5_e3", "k5_e6", "k3_e6",
           "k5_e6", "k5_e3", "k5_e6", "k5_e6",
           "k5_e6", "k5_e6", "k5_e6", "k5_e3",
           "k5_e6", "k5_e6", "k5_e6", "k5_e6",
           "k3_e6")
PUBLISHED = {"a": (FBNET_A, 1504), "b": (FBNET_B, 1984), "c": (FBNET_C, 1984)}  # (choices, head)


def scaled(width, width_multiplier):
    """`width` times the multiplier, rounded, at least 1.

    >>> scaled(184, 0.25)
    46
    """
    return max(1, int(round(width * width_multiplier)))


def layer_plan(layers_per_stage=None, width_multiplier=1.0):
    """[(stage, block, width, stride)] for the searchable layers, stage and block 1-based.

    Example::

        len(layer_plan())                       # 22
        layer_plan()[1]                         # (2, 1, 24, 2)
    """
    counts = _check_layers(layers_per_stage)
    plan = []
    for stage, (n, width, stride) in enumerate(zip(counts, STAGE_WIDTHS, STAGE_STRIDES), start=1):
        for block in range(1, n + 1):
            plan.append((stage, block, scaled(width, width_multiplier), stride if block == 1 else 1))
    return plan


def _check_layers(layers_per_stage):
    if layers_per_stage is None:
        return STAGE_LAYERS
    counts = tuple(layers_per_stage)
    if len(counts) != len(STAGE_LAYERS) or not all(isinstance(n, int) and n >= 1 for n in counts):
        raise ValueError(f"layers_per_stage must be {len(STAGE_LAYERS)} positive ints (stages 1..7), "
                         f"got {layers_per_stage!r}.")
    return counts


def _bn_relu(x, name, relu=True):
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def operator_branch(x, op, width, stride, use_bias, name):
    """One inverted-residual operator without its residual; returns its output tensor.

    [1x1 expansion + BN + ReLU] -> KxK depthwise (stride) + BN + ReLU -> 1x1
    projection (groups as the operator says) + BN. Layers are named
    `{name}_expand`, `{name}_dw`, `{name}_project` (+ `_bn`, `_relu`).

    Example::

        y = operator_branch(x, "k5_e6", width=32, stride=2, use_bias=False, name="s3b1_k5_e6")
    """
    kernel, expansion, groups = OPERATORS[op]
    in_width = x.shape[-1]
    inner = in_width * expansion
    y = x
    if expansion != 1:
        y = keras.layers.Conv2D(inner, 1, use_bias=use_bias, name=f"{name}_expand")(y)
        y = _bn_relu(y, f"{name}_expand")
    y = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=use_bias,
                                     name=f"{name}_dw")(y)
    y = _bn_relu(y, f"{name}_dw")
    y = keras.layers.Conv2D(width, 1, groups=groups, use_bias=use_bias, name=f"{name}_project")(y)
    return _bn_relu(y, f"{name}_project", relu=False)


def searchable_layer(x, ops, width, stride, use_bias=False, skip_projection=True, name="layer"):
    """One FBNet layer with the operators `ops` in parallel, outputs summed.

    With stride 1 and unchanged width: x + Σ f_op(x) ('skip' is the identity x,
    shared with the operators' residuals). Otherwise Σ f_op(x), plus a strided
    1x1 conv + BN + ReLU projection for 'skip' if `skip_projection` (else 'skip'
    is left out there). A single term is returned as is (no Add layer).

    Example::

        y = searchable_layer(x, ("k3_e6", "k5_e6", "skip"), 24, 2, name="s2b1")
    """
    for op in ops:
        if op not in OPERATORS:
            raise ValueError(f"Unknown FBNet operator {op!r}; known: {sorted(OPERATORS)}.")
    residual = stride == 1 and x.shape[-1] == width
    terms = [x] if residual and "skip" in ops else []
    for op in ops:
        if op != "skip":
            terms.append(operator_branch(x, op, width, stride, use_bias, f"{name}_{op}"))
    if not residual and "skip" in ops and skip_projection:
        s = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_skip_conv")(x)
        terms.append(_bn_relu(s, f"{name}_skip"))
    if not terms:
        raise ValueError(f"Layer '{name}' has no operator left (ops={tuple(ops)!r}, "
                         f"shape-changing, skip_projection={skip_projection}).")
    if len(terms) == 1:
        return terms[0]
    return keras.layers.Add(name=f"{name}_add")(terms)


def _network(layer_ops, input_shape, classes, small_input, width_multiplier, layers_per_stage,
             head_width, use_bias, skip_projection, name):
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}.")
    plan = layer_plan(layers_per_stage, width_multiplier)
    if len(layer_ops) != len(plan):
        raise ValueError(f"Need one operator choice per searchable layer: {len(plan)} layers "
                         f"(layers_per_stage={_check_layers(layers_per_stage)}), got {len(layer_ops)}.")
    inputs = keras.Input(tuple(input_shape), name="image")
    x = keras.layers.Conv2D(scaled(STEM_WIDTH, width_multiplier), 3, strides=1 if small_input else 2,
                            padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn_relu(x, "stem")
    for (stage, block, width, stride), ops in zip(plan, layer_ops):
        x = searchable_layer(x, ops, width, stride, use_bias=use_bias, skip_projection=skip_projection,
                             name=f"s{stage}b{block}")
    x = keras.layers.Conv2D(scaled(head_width, width_multiplier), 1, use_bias=False, name="head_conv")(x)
    x = _bn_relu(x, "head")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def fbnet_supernet(op_set="reduced", input_shape=(224, 224, 3), classes=1000, small_input=False,
                   width_multiplier=1.0, layers_per_stage=None, name=None, head_width=HEAD_WIDTH,
                   use_bias=False, skip_projection=True):
    """The FBNet supernet: every searchable layer holds all operators of `op_set`, summed.

    Args:
      op_set: "reduced" ({k3_e6, k5_e6, skip}, FiGS-FBNet), "no_group" (the
        original set without the two g2 operators) or "original" (all 9 FBNet
        operators; the grouped convs fix every residual stream's width).
      input_shape: (height, width, channels), channels last.
      classes: outputs of the Dense classifier (logits).
      small_input: stride-1 stem, for 28x28 / 32x32 inputs.
      width_multiplier: scales stem, stage and head widths (1.0: the paper's).
      layers_per_stage: seven ints overriding (1, 4, 4, 4, 4, 4, 1).
      name: model name (default "fbnet_supernet_<op_set>", "_small" appended
        for small_input).
      head_width: width of the 1x1 head conv before pooling (1984).
      use_bias: bias on the convolutions inside operators.
      skip_projection: 'skip' on shape-changing layers is a 1x1 conv + BN +
        ReLU (True) or absent (False).

    Returns:
      keras.Model from an image batch to (batch, classes) logits.

    Example::

        supernet = fbnet_supernet()                        # FiGS-FBNet at 224x224x3
        search = figs_tf.wrap(supernet, cost="flops", strength=1.3e-9)
        tiny = fbnet_supernet(input_shape=(28, 28, 1), classes=10, small_input=True,
                              width_multiplier=0.25, layers_per_stage=(1,) * 7)
    """
    if op_set not in OP_SETS:
        raise ValueError(f"op_set must be one of {sorted(OP_SETS)}, got {op_set!r}.")
    if name is None:
        name = f"fbnet_supernet_{op_set}" + ("_small" if small_input else "")
    n = len(layer_plan(layers_per_stage))
    return _network([OP_SETS[op_set]] * n, input_shape, classes, small_input, width_multiplier,
                    layers_per_stage, head_width, use_bias, skip_projection, name)


def fbnet(choices, input_shape=(224, 224, 3), classes=1000, name=None, head_width=HEAD_WIDTH,
          small_input=False, width_multiplier=1.0, layers_per_stage=None, use_bias=True):
    """A single-path FBNet: one operator name per searchable layer (22 by default).

    Args:
      choices: operator names, e.g. FBNET_B; see OPERATORS.
      input_shape, classes, small_input, width_multiplier, layers_per_stage:
        as in `fbnet_supernet`.
      name: model name (default "fbnet").
      head_width: 1x1 head width (1984; the released FBNet-A uses 1504).
      use_bias: bias on the convolutions inside operators (True, as the
        authors' released FBNet-A/B/C).

    Example::

        model = fbnet(FBNET_C, head_width=1984)            # FBNet-C, 378.1M MAdds
        mine = fbnet(["k3_e6"] * 22, name="all_k3_e6")
    """
    choices = tuple(choices)
    for op in choices:
        if not isinstance(op, str) or op not in OPERATORS:
            raise ValueError(f"Unknown FBNet operator {op!r}; known: {sorted(OPERATORS)}.")
    return _network([(op,) for op in choices], input_shape, classes, small_input, width_multiplier,
                    layers_per_stage, head_width, use_bias, True, name or "fbnet")


def published_fbnet(variant, input_shape=(224, 224, 3), classes=1000, name=None):
    """FBNet-A, -B or -C as released by the authors (operators and head width).

    Example::

        model_a = published_fbnet("a")                   # 244.5M MAdds, head 1504
    """
    key = str(variant).lower().replace("fbnet", "").strip("-_ ")
    if key not in PUBLISHED:
        raise ValueError(f"variant must be 'a', 'b' or 'c', got {variant!r}.")
    choices, head = PUBLISHED[key]
    return fbnet(choices, input_shape=input_shape, classes=classes, head_width=head,
                 name=name or f"fbnet_{key}")


def fashion_mnist_supernet(op_set="reduced", width_multiplier=0.25, layers_per_stage=(1,) * 7,
                           classes=10, name=None):
    """A tiny FBNet supernet for Fashion-MNIST (28x28x1): stride-1 stem, one layer a stage.

    With the defaults: stem 4, stages 4/6/8/16/28/46/88, head 496, resolutions
    28, 28, 14, 7, 4, 4, 2, 2.

    Example::

        search = figs_tf.wrap(fashion_mnist_supernet(), cost="flops", strength=1e-7)
    """
    return fbnet_supernet(op_set=op_set, input_shape=(28, 28, 1), classes=classes, small_input=True,
                          width_multiplier=width_multiplier, layers_per_stage=layers_per_stage,
                          name=name)


def _layer_inputs(layers_per_stage, width_multiplier):
    """[(name, width, residual)] per searchable layer; residual: stride 1 and the width kept."""
    layers, in_width = [], scaled(STEM_WIDTH, width_multiplier)
    for stage, block, width, stride in layer_plan(layers_per_stage, width_multiplier):
        layers.append((f"s{stage}b{block}", width, stride == 1 and in_width == width))
        in_width = width
    return layers


def operator_choices(architecture, op_set="reduced", layers_per_stage=None, width_multiplier=1.0,
                     skip_projection=True):
    """Which operators each searchable layer of an exported architecture kept.

    An operator kK_eE is kept iff its projection keeps channels (a dead
    operator is removed whole: figs_tf.branches). 'skip' is the identity where
    the layer keeps its shape (always there: it is the residual) and the 1x1
    projection elsewhere (kept with the stage's stream); a layer that kept
    no other operator is a skip layer.

    Args:
      architecture: {layer: width} from `figs_tf.export_architecture` or an
        architecture JSON (`figs_tf.load_architecture`).
      op_set, layers_per_stage, width_multiplier, skip_projection: as given
        to `fbnet_supernet` (the training config's `space_kwargs`).

    Returns:
      {layer ("s2b1", ...): {operator: kept}} in network order.

    Example::

        choices = operator_choices(figs_tf.export_architecture(search))
        choices["s3b1"]                         # {'k3_e6': True, 'k5_e6': False, 'skip': True}
    """
    if op_set not in OP_SETS:
        raise ValueError(f"op_set must be one of {sorted(OP_SETS)}, got {op_set!r}.")
    choices = {}
    for name, _, residual in _layer_inputs(layers_per_stage, width_multiplier):
        kept = {}
        for op in OP_SETS[op_set]:
            if op != "skip":
                kept[op] = architecture[f"{name}_{op}_project"] > 0
            elif residual:
                kept[op] = True
            elif skip_projection:
                kept[op] = architecture[f"{name}_skip_conv"] > 0
        choices[name] = kept
    return choices


def single_path_architecture(supernet, choices):
    """The architecture of a supernet that keeps one operator per layer, at full width.

    How a fixed network such as FBNet-B's choice sits in a FiGS supernet (for
    `figs_tf.build_from_architecture`, or retraining with
    `--config.retrain.architecture`): every other operator gets width 0 and is
    removed. An operator the supernet lacks is its kK_e6 operator pruned to
    the inner width E x (layer input width): a pruned k3_e6 is a k3_e1 or
    k3_e3 (FiGS Sec. 3.3). 'skip' keeps no operator. Shape-changing layers
    keep the supernet's 1x1 skip projection, which is part of the stream.

    Args:
      supernet: a model from `fbnet_supernet`.
      choices: one operator name per searchable layer (e.g. FBNET_B).

    Returns:
      {layer: width} of every layer of the supernet that makes channels.

    Raises:
      ValueError: the wrong number of choices, or an operator the supernet
        can express neither as itself nor as a pruned kK_e6.

    Example::

        supernet = fashion_mnist_supernet()
        architecture = single_path_architecture(supernet, ("k3_e1",) + ("k5_e6",) * 6)
    """
    widths = {layer.name: (layer.filters if hasattr(layer, "filters") else layer.units) for layer in supernet.layers
              if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}
    names = sorted({n.split("_")[0] for n in widths if re.fullmatch(r"s\d+b\d+", n.split("_")[0])},
                   key=lambda n: tuple(int(part) for part in n[1:].split("b")))
    choices = tuple(choices)
    if len(choices) != len(names):
        raise ValueError(f"Need one operator per searchable layer of {supernet.name!r} ({len(names)}), "
                         f"got {len(choices)}.")
    for name, choice in zip(names, choices):
        present = sorted({n[len(name) + 1:-len("_project")] for n in widths
                          if n.startswith(f"{name}_") and n.endswith("_project")})
        for op in present:
            for suffix in ("_expand", "_project"):
                if f"{name}_{op}{suffix}" in widths:
                    widths[f"{name}_{op}{suffix}"] = 0
        if choice == "skip":
            continue
        if choice not in OPERATORS:
            raise ValueError(f"Unknown FBNet operator {choice!r}; known: {sorted(OPERATORS)}.")
        kernel, expansion, groups = OPERATORS[choice]
        host = choice if choice in present else f"k{kernel}_e6"
        if host not in present or groups != 1 and host != choice:
            raise ValueError(f"Layer {name} of {supernet.name!r} has operators {present}: it cannot express "
                             f"{choice!r}.")
        project = supernet.get_layer(f"{name}_{host}_project")
        widths[f"{name}_{host}_project"] = project.filters
        if f"{name}_{host}_expand" in widths:
            expand = supernet.get_layer(f"{name}_{host}_expand")
            widths[f"{name}_{host}_expand"] = expand.filters if host == choice else \
                expansion * expand.input.shape[-1]
    return widths
