"""The paper's search spaces, one module each, as ordinary Keras functional models.

Each module builds (a) the supernet that `figs_tf.wrap` turns into a search
model and (b), through `figs_tf.build_from_architecture`, a fresh network with
the widths of an exported architecture for retraining from scratch.
"""
