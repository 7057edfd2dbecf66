"""What the binaries (AL and retraining) share: plan, data, optimizer, the fit loop.

Both binaries read top to bottom as

    check(config, processes)                                # before any work
    run = runtime.make_runtime(config, processes)           # engine, processes, devices
    prepare(config, phase_dir, run)                         # workdir, precision, seed
    plan = make_plan(config, "search", run)                 # steps, batches, decay
    with run.scope():
        model = ...                                         # search model or fresh network
        compile_model(model, config, plan)                  # Adam, schedule, EMA, metrics
    fit(model, config, plan, run, phase_dir, extra_callbacks)
    accuracy = evaluate(model, config, plan, run)

The paper's training setup (method.md, "Training setup") and where it lives:
- Adam with β1 0.9, β2 0.999, ε = 1.0: `config.optimizer` -> `keras.optimizers.Adam`.
- Learning rate decayed smoothly ×`decay_factor` every `decay_epochs` epochs:
  `keras.optimizers.schedules.ExponentialDecay(staircase=False)`.
- Weight decay 1.7e-5: Keras's decoupled weight decay (`lr · wd · w` per step).
  With ε = 1 Adam's step is close to SGD's for small gradients, where this is
  the same as an L2 term in the loss. Gate logits and BatchNorm γ/β are
  excluded: decay would pull every gate towards π = 0.5.
- Moving averages 0.9997 for evaluation: the optimizer's EMA of the weights
  (`use_ema`, `ema_momentum`; Keras's `fit` copies them into the model at
  its end, `finalize_variable_values`) and BatchNorm's own moving statistics
  (`config.bn_momentum`). Under a budget the gate logits are kept out of the
  average (`figs_tf.BudgetController`: the export is the architecture it
  steered to), and a change of the gate speed rescales the average with θ.
- Preemption: a checkpoint (`workdir.Checkpoints`) after every (virtual) epoch
  of `steps_per_checkpoint` steps, with the gates' noise state; the training
  data is a function of the step (`input_pipeline.make_dataset(start_batch=)`).
  A rerun of the same command resumes at the last checkpoint and trains what
  the uninterrupted run trains from there, whenever the kill came.
"""

import dataclasses
import math
import sys
import time

import keras
import numpy as np
from absl import logging

from figs_tf import files
from figs_tf import keras_graph
from figs_tf import spaces
from figs_tf import wrapping
from figs_tf.channel_groups import analyze
from figs_tf.mask_layer import MaskLayer
from figs_tf.train import config_checks
from figs_tf.train import errors
from figs_tf.train import input_pipeline
from figs_tf.train import runtime as runtime_lib
from figs_tf.train import workdir as workdir_lib


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped before saving it."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many steps of which batch size a phase trains, in Keras `fit` terms."""
    phase: str
    global_batch_size: int
    num_replicas: int
    train_examples: int
    steps_per_data_epoch: int   # one pass over the training data
    steps_per_epoch: int        # one Keras epoch = one checkpoint interval
    epochs: int                 # Keras epochs
    decay_steps: int

    @property
    def total_steps(self):
        return self.steps_per_epoch * self.epochs


def make_plan(config, phase, run):
    """Turns the config's data epochs into Keras epochs of `steps_per_checkpoint` steps.

    Training always runs a whole number of checkpoint intervals, rounded up, so
    a preempted run that resumes at a checkpoint does exactly the steps left.
    """
    settings = config[phase]
    batch = settings.batch_size
    run.check_batch(f"config.{phase}.batch_size", batch)
    run.check_batch("config.eval_batch_size", config.eval_batch_size)
    examples = input_pipeline.num_examples(config.dataset, input_pipeline.dataset_info(config.dataset).train_split,
                                           data_dir=config.data_dir, max_examples=config.train_examples)
    per_data_epoch = max(1, examples // batch)
    total = max(1, round(settings.epochs * per_data_epoch))
    per_epoch = min(settings.steps_per_checkpoint or per_data_epoch, total)
    return Plan(phase=phase, global_batch_size=batch, num_replicas=run.num_devices, train_examples=examples,
                steps_per_data_epoch=per_data_epoch, steps_per_epoch=per_epoch,
                epochs=math.ceil(total / per_epoch),
                decay_steps=max(1, round(settings.decay_epochs * per_data_epoch)))


def check(config, processes):
    """Before any work (and before joining other processes): the config and the engine."""
    config_checks.check(config)
    processes.check()
    runtime_lib.refuse_multi_worker(config, processes)


def prepare(config, directory, run):
    """Before training: the workdir is writable and records the config; precision and seed.

    Only the writer writes; a rerun's config is compared with the recorded one
    on every process.
    """
    if run.writer:
        try:
            files.check_writable(directory)
        except ValueError as error:  # the library's error, the binaries' user error
            raise errors.UserError(str(error)) from None
    workdir_lib.record_config(config, directory, write=run.writer)
    set_mixed_precision(config)
    keras.utils.set_random_seed(config.seed)


def training_images(config, count):
    """The first `count` augmented training images as one array, read on the host."""
    info = input_pipeline.dataset_info(config.dataset)
    batch = min(count, 512)
    data = input_pipeline.make_dataset(
        config.dataset, info.train_split, global_batch_size=batch, training=True, data_dir=config.data_dir,
        image_size=config.image_size, augment=config.augment, drop_remainder=False, seed=config.seed,
        max_examples=config.train_examples)
    images = [images.numpy() for images, _ in data.take(max(1, count // batch))]
    return np.concatenate(images, axis=0)


def set_mixed_precision(config):
    keras.mixed_precision.set_global_policy(config.mixed_precision or "float32")


def build_supernet(config):
    """The search space's supernet for the config's dataset, BatchNorm momentum set."""
    info = input_pipeline.dataset_info(config.dataset)
    supernet = spaces.build_supernet(config.space, input_pipeline.input_shape(config.dataset, config.image_size),
                                     info.num_classes, **config.space_kwargs.to_dict())
    set_batchnorm_momentum(supernet, config.bn_momentum)
    return supernet


def producer_widths(model):
    """{layer: output channels (an RNN: units)} of every layer that makes channels, in the supernet.

    For a search model these are the supernet's widths (gates do not change shapes).
    """
    searching = any(isinstance(layer, MaskLayer) for layer in model.layers)
    graph = wrapping.channel_graph_of(model) if searching else analyze(model)
    return {name: sum(s.channels for s in channel_set) for name, _, channel_set in graph.width_entries()}


def set_batchnorm_momentum(model, momentum):
    for layer in keras_graph.sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def make_optimizer(config, plan, no_decay=()):
    """Adam (ε from the config), smooth exponential decay, decoupled weight decay, EMA."""
    settings, options = config[plan.phase], config.optimizer
    schedule = keras.optimizers.schedules.ExponentialDecay(
        settings.learning_rate, decay_steps=plan.decay_steps, decay_rate=settings.decay_factor,
        staircase=False)
    optimizer = keras.optimizers.Adam(
        schedule, beta_1=options.beta_1, beta_2=options.beta_2, epsilon=options.epsilon,
        weight_decay=options.weight_decay or None, use_ema=bool(options.ema_momentum),
        ema_momentum=options.ema_momentum or 0.99)
    if options.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=list(no_decay))
    return optimizer


def variables_without_weight_decay(model):
    """Gate logits and BatchNorm scale/offset: weight decay is for kernels only."""
    excluded = []
    for layer in keras_graph.sublayers(model):
        if isinstance(layer, (keras.layers.BatchNormalization, MaskLayer)):
            excluded.extend(layer.trainable_variables)
    return excluded


def compile_model(model, config, plan, no_decay=None, optimizer=None):
    """Compiles `model` with the phase's optimizer, a from-logits loss and accuracy.

    `no_decay`: the variables kept out of weight decay (None: those of `model`,
    `variables_without_weight_decay`); `optimizer`: one to use instead of a new one.
    """
    if optimizer is None:
        optimizer = make_optimizer(config, plan, variables_without_weight_decay(model) if no_decay is None
                                   else no_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # On JAX a step that is not jitted runs op by op: the JAX backend always compiles.
        jit_compile=config.jit_compile or keras.backend.backend() == "jax",
        steps_per_execution=config.steps_per_execution)


def training_data(config, plan, run, start_step=0):
    """This process's training stream from step `start_step` on (what it reads at that step
    in an uninterrupted run: the stream is a function of the step)."""
    info = input_pipeline.dataset_info(config.dataset)
    return run.distribute(lambda context: input_pipeline.make_dataset(
        config.dataset, info.train_split, global_batch_size=plan.global_batch_size, training=True,
        input_context=context, data_dir=config.data_dir, image_size=config.image_size, augment=config.augment,
        drop_remainder=True, seed=config.seed, max_examples=config.train_examples, start_batch=start_step))


def evaluation_data(config, run):
    """This process's share of the evaluation split, read once in order."""
    info = input_pipeline.dataset_info(config.dataset)
    return run.distribute(lambda context: input_pipeline.make_dataset(
        config.dataset, info.eval_split, global_batch_size=config.eval_batch_size, training=False,
        input_context=context, data_dir=config.data_dir, image_size=config.image_size,
        drop_remainder=run.full_batches_only, max_examples=config.eval_examples))


def evaluation_steps(config, run):
    """Batches in one pass over the evaluation split (distributed data has no length)."""
    info = input_pipeline.dataset_info(config.dataset)
    examples = input_pipeline.num_examples(config.dataset, info.eval_split, data_dir=config.data_dir,
                                           max_examples=config.eval_examples)
    full, rest = divmod(examples, config.eval_batch_size)
    return full if run.full_batches_only or not rest else full + 1


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss, before anything saves those weights.

    Placed before the checkpoints: raising here ends `fit` before the
    checkpoint of this epoch is written and before `on_train_end`, so the last
    good checkpoint stays and a rerun resumes from it.
    """

    def __init__(self, checkpoints):
        super().__init__()
        self.checkpoints = checkpoints

    def _check(self, logs, where):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"The training loss became {float(loss)} at {where}; training stopped before this was "
                f"checkpointed. The last good checkpoint (step {self.checkpoints.latest_step()}) is kept in "
                f"{self.checkpoints.directory}. Lower the learning rate (or λ, or use float32), then rerun the "
                f"same command to resume from it.")

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"step {batch} of the epoch")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch}")


def fit(model, config, plan, run, directory, callbacks=()):
    """Trains `model` for the plan's steps with checkpoints, logs and TensorBoard.

    `callbacks` come first (e.g. CostCallback, which writes figs_* numbers into
    the logs that CSVLogger and TensorBoard then record). Returns the step this
    run started at (non-zero when it resumed after preemption).
    """
    checkpoints = workdir_lib.Checkpoints(workdir_lib.checkpoint_dir(directory), run)
    # Restored before the data is built: the training stream starts at the restored step.
    start_step = checkpoints.restore(model, callbacks)
    if start_step % plan.steps_per_epoch:
        raise errors.UserError(f"The checkpoint in {checkpoints.directory} is at step {start_step}, not at the end of a "
                         f"Keras epoch of {plan.steps_per_epoch} steps: it was written with another "
                         "steps_per_checkpoint. Rerun with the config in config.json.")
    start_epoch = start_step // plan.steps_per_epoch
    if start_step:
        logging.info("Resuming %s from its checkpoint in %s: step %d of %d (Keras epoch %d of %d).", plan.phase,
                     checkpoints.directory, start_step, plan.total_steps, start_epoch, plan.epochs)
    run.agree("resume points", str(start_step))  # every process restored the same checkpoint
    run.log_start(plan.phase, plan)
    all_callbacks = [StopOnNonFiniteLoss(checkpoints), *callbacks]
    history = files.join(directory, workdir_lib.HISTORY_FILE)
    if run.writer:
        # An epoch's row is written before its checkpoint; a resume drops the rows of the epochs it reruns.
        local_history = workdir_lib.local_copy(history)
        workdir_lib.trim_history(local_history, start_epoch)
        all_callbacks.append(keras.callbacks.CSVLogger(local_history, append=True))
        if local_history != history:
            all_callbacks.append(workdir_lib.CopyEachEpoch(local_history, history))
    all_callbacks.append(checkpoints)
    if run.writer:
        all_callbacks.append(keras.callbacks.TensorBoard(files.join(directory, workdir_lib.TENSORBOARD_DIR),
                                                         write_graph=False))
    progress = keras_verbosity(config.progress) if run.writer else 0
    model.fit(training_data(config, plan, run, start_step), initial_epoch=start_epoch, epochs=plan.epochs,
              steps_per_epoch=plan.steps_per_epoch, callbacks=all_callbacks, verbose=progress,
              shuffle=False)  # the input pipeline shuffles
    # With use_ema, fit has copied the moving averages into the weights at its end (Keras's
    # finalize_variable_values): evaluation and export use them (paper).
    return start_step


def keras_verbosity(progress, stream=None):
    """Keras's `verbose` for `config.progress`: "auto" is the bar (1) on a terminal and one line per
    epoch (2) otherwise, since each update of the bar is written with a carriage return."""
    if progress == "auto":
        progress = "bar" if (stream or sys.stdout).isatty() else "epoch"
    return {"bar": 1, "epoch": 2, "none": 0}[progress]


def evaluate(model, config, run):
    """Top-1 accuracy on the evaluation split (inference mode)."""
    results = model.evaluate(evaluation_data(config, run), steps=evaluation_steps(config, run), verbose=0,
                             return_dict=True)
    return float(results["accuracy"])


class Stopwatch:
    def __init__(self):
        self.start = time.time()

    def seconds(self):
        return round(time.time() - self.start, 1)
