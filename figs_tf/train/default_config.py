r"""The embedded default: FiGS on Fashion-MNIST with a small CNN, minutes on a laptop CPU.

    figs-search  --workdir=runs/demo     # AL: learn widths under a parameter cost
    figs-retrain --workdir=runs/demo     # retrain the exported architecture from scratch

Every training config starts from this one and changes what it needs; it sets
every key the binaries read (they reject unknown keys). Override any key on
the command line, e.g. `--config.strength=5e-6 --config.search.epochs=2`;
`figs-search --print_config` lists every key with its value, type and range.
"""

import ml_collections


def get_config(arg=None):
    """Returns the default config. `arg` is unused (no variants)."""
    del arg
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Data (figs_tf.train.input_pipeline): tfds name, tfds data_dir (local or gs://).
    config.dataset = "fashion_mnist"
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.image_size = ml_collections.config_dict.placeholder(int)  # None: the dataset's own
    config.augment = False
    config.train_examples = ml_collections.config_dict.placeholder(int)  # None: the whole split
    config.eval_examples = ml_collections.config_dict.placeholder(int)
    config.eval_batch_size = 1000

    # Search space (figs_tf.spaces.SPACES) and its builder's arguments.
    config.space = "small_cnn"
    config.space_kwargs = ml_collections.ConfigDict(dict(widths=(32, 64, 128), convs_per_block=1,
                                                        head="flatten"))
    # The paper's 0.9997 needs ~10k steps to settle; a short run needs a faster average.
    config.bn_momentum = 0.9

    # Cost: λ · E[params] (paper eq. 6); a budget adjusts λ during AL: `target` in the
    # cost's unit, or `target_fraction` of the supernet's cost (resolved once it is built).
    config.cost = "params"
    # With Adam at ε = 1 a logit moves about lr · λ · (cost of its channel) · π(1-π)
    # per step; what 3e-5 at lr 1.0 exports: docs/results.md, "The README's first command".
    config.strength = 3e-5
    config.target = ml_collections.config_dict.placeholder(float)
    config.target_fraction = ml_collections.config_dict.placeholder(float)
    # A Pareto set from one AL run (figs_tf.ParetoController): budgets in the cost's unit,
    # e.g. (60000, 40000, 20000); one architecture JSON each in <workdir>/search/pareto/.
    config.pareto_budgets = ()
    # The gates (figs_tf.MaskLayer): the paper's τ = 1e-3 and initial logit 2.5.
    config.temperature = 1e-3
    config.initial_logit = 2.5
    # M multiplies the gate logits' gradient (with Adam at ε = 1: a gate learning rate
    # M × lr). The paper's 1 assumes ~250k AL steps; see figs_tf/mask_layer.py.
    config.logit_gradient_multiplier = 1.0
    # The gates' speed s (logits ν = s·θ, θ trained): None lets the budget controller choose
    # it for the planned AL run (with `target` or `pareto_budgets`; a fixed λ keeps 1, the
    # paper); a number fixes it. docs/budget.md, "Gate speed".
    config.gate_speed = ml_collections.config_dict.placeholder(float)

    # Where it runs.
    config.strategy = "auto"
    config.tpu = "local"
    config.mixed_precision = ml_collections.config_dict.placeholder(str)
    config.jit_compile = False  # XLA on the TensorFlow backend; the JAX backend always compiles
    config.steps_per_execution = 1
    # Keras's progress output: "auto" is a bar on a terminal and one line per epoch when
    # stdout is a file or a pipe (a log, nohup); "bar", "epoch" or "none" choose one.
    config.progress = "auto"

    # The paper's Adam: ε = 1.0 (so steps are about lr · gradient, SGD-like: hence the
    # paper's large learning rates); weight decay 1.7e-5; EMA off for short runs.
    config.optimizer = ml_collections.ConfigDict(dict(
        beta_1=0.9, beta_2=0.999, epsilon=1.0, weight_decay=1.7e-5,
        ema_momentum=ml_collections.config_dict.placeholder(float)))

    config.search = ml_collections.ConfigDict(dict(
        epochs=2.0, batch_size=128, learning_rate=1.0, decay_epochs=35.0, decay_factor=0.5,
        steps_per_checkpoint=ml_collections.config_dict.placeholder(int),
        recalibrated_eval=True))
    # Retraining from scratch: doubled batch and learning rate (paper); a short run
    # needs the learning rate annealed (×1/16 over 5 epochs) to settle.
    # init="inherited" starts from the search model's weights instead (figs_tf.slim of
    # <workdir>/search/search_model.keras); teacher="search" distils from the search
    # model's exported network (keras.distillation.Distiller): the loss is
    # distill_label_weight × cross-entropy + the rest × T²·KL at temperature T.
    config.retrain = ml_collections.ConfigDict(dict(
        epochs=5.0, batch_size=256, learning_rate=2.0, decay_epochs=1.25, decay_factor=0.5,
        steps_per_checkpoint=ml_collections.config_dict.placeholder(int),
        architecture=ml_collections.config_dict.placeholder(str),
        init="scratch", teacher="", distill_temperature=4.0, distill_label_weight=0.5))
    return config


def paper_imagenet(config):
    """The paper's ImageNet recipe (appendix) applied to `config`; returns it.

    AL: 100 epochs, batch 512, Adam (ε = 1) at 1.6 decayed ×0.5 every 35
    epochs, weight decay 1.7e-5, moving averages 0.9997 for the evaluation
    weights and BatchNorm statistics, ResNet augmentation. Retraining: 400
    epochs, batch 1024, learning rate 3.2. bfloat16 on TPU.
    """
    config.dataset = "imagenet2012"
    config.augment = True
    config.eval_batch_size = 1024
    config.bn_momentum = 0.9997
    config.optimizer.ema_momentum = 0.9997
    config.mixed_precision = "mixed_bfloat16"
    config.gate_speed = 1.0  # the paper's gates, also under a budget
    config.jit_compile = True
    config.progress = "epoch"
    config.search.update(dict(epochs=100, batch_size=512, learning_rate=1.6, decay_epochs=35.0,
                              decay_factor=0.5, recalibrated_eval=False))
    config.retrain.update(dict(epochs=400, batch_size=1024, learning_rate=3.2, decay_epochs=35.0,
                               decay_factor=0.5))
    return config
