"""`CostCallback`: what the search is doing, in `logs`, JSON and a picture.

    callbacks = [figs_tf.CostCallback(workdir),          # before the loggers,
                 keras.callbacks.CSVLogger(...),         # so that they see
                 keras.callbacks.TensorBoard(...)]       # the figs_* numbers
    search.fit(data, epochs=40, callbacks=callbacks)

Each epoch it adds to `logs`:
- `figs_expected_<metric>`: the expected cost (eq. 6) at the current logits;
- `figs_exported_<metric>`: the exact cost of the architecture export would give;
- `figs_strength`: λ;
- `figs_width/<layer>`: the exported width of every layer that makes channels;
and writes `<workdir>/architecture.json` (atomically). At the end of training
it saves `<workdir>/widths.png`: per-layer widths of the supernet and of the
exported architecture.
"""

import os

import keras

from figs_tf import cost as cost_lib
from figs_tf import export as export_lib
from figs_tf import handlers as handlers_lib
from figs_tf import wrapping as wrap_lib

ARCHITECTURE_FILE = "architecture.json"
WIDTHS_PLOT_FILE = "widths.png"


class CostCallback(keras.callbacks.Callback):
    """Logs expected/exported cost and widths, writes the architecture JSON.

    Args:
      workdir: directory for architecture.json and widths.png (None: no files).
      metrics: costs to report; default both "params" and "flops" (FLOPs are
        skipped with a note if the model's input size is not static).
      plot: save the width plot at the end of training.
    """

    def __init__(self, workdir=None, metrics=cost_lib.METRICS, plot=True):
        super().__init__()
        self.workdir = workdir
        self.metrics = [cost_lib.check_metric(m) for m in metrics]
        self.plot = plot
        self.history = []  # one dict per epoch: the figs_* numbers
        if workdir is not None and not str(workdir).startswith("gs://"):
            os.makedirs(workdir, exist_ok=True)

    def _supernet_costs(self):
        """{metric: supernet cost} for the metrics this model can be counted in."""
        costs = {}
        for metric in self.metrics:
            try:
                costs[metric] = export_lib.supernet_cost(self.model, metric)
            except handlers_lib.UnsupportedLayerError as error:
                print(f"figs_tf.CostCallback: not reporting {metric}: {error}")
        return costs

    def on_train_begin(self, logs=None):
        wrap_lib.gates_of(self.model)  # fail early with a clear message
        self.supernet = self._supernet_costs()
        self._metrics = list(self.supernet)

    def summary(self):
        """The figs_* numbers at the current logits."""
        network = export_lib.exported_network(self.model)
        numbers = {"figs_strength": wrap_lib.get_strength(self.model)}
        for metric in getattr(self, "_metrics", self.metrics):
            numbers[f"figs_expected_{metric}"] = export_lib.expected_cost(self.model, metric)
            numbers[f"figs_exported_{metric}"] = network.cost(metric)
        for name, width in network.architecture().items():
            numbers[f"figs_width/{name}"] = width
        return numbers, network

    def on_epoch_end(self, epoch, logs=None):
        numbers, network = self.summary()
        if logs is not None:
            logs.update(numbers)
        self.history.append(dict(numbers, epoch=epoch))
        if self.workdir is not None:
            self._write_architecture(network, epoch)

    def _write_architecture(self, network, epoch):
        metadata = {"epoch": int(epoch),
                    "exported_cost": {m: network.cost(m) for m in self._metrics},
                    "supernet_cost": self.supernet,
                    "strength": wrap_lib.get_strength(self.model)}
        path = os.path.join(self.workdir, ARCHITECTURE_FILE)
        if str(self.workdir).startswith("gs://"):
            import tensorflow as tf  # pylint: disable=g-import-not-at-top
            local = export_lib.save_architecture(network.architecture(), f"/tmp/figs_{os.getpid()}.json",
                                                 channels=network.channels(), **metadata)
            tf.io.gfile.copy(local, path, overwrite=True)
        else:
            export_lib.save_architecture(network.architecture(), path, channels=network.channels(), **metadata)

    def on_train_end(self, logs=None):
        if self.plot and self.workdir is not None and not str(self.workdir).startswith("gs://"):
            plot_widths(self.model, os.path.join(self.workdir, WIDTHS_PLOT_FILE))


def plot_widths(search, path):
    """Bar chart of per-layer widths: supernet vs exported architecture."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    network = export_lib.exported_network(search)
    exported = network.architecture()
    names = list(exported)
    supernet = [network.graph.out_sets(c)[0] for c in network.graph.producer_calls()]
    supernet = [sum(s.channels for s in channel_set) for channel_set in supernet]
    figure, axis = plt.subplots(figsize=(max(6, 0.25 * len(names) + 2), 4))
    positions = range(len(names))
    axis.bar(positions, supernet, color="#d0d7e1", label="supernet")
    axis.bar(positions, [exported[n] for n in names], color="#3566a8", label="exported")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(names, rotation=90, fontsize=6)
    axis.set_ylabel("output channels")
    axis.set_title(f"{search.name}: widths per layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
