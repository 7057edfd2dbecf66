"""The training binaries and what only they use: `figs-search` (AL) and `figs-retrain`.

    figs-search  --config=experiments/one_shot_imagenet.py:A --workdir=gs://BUCKET/one_shot_a
    figs-retrain --config=experiments/one_shot_imagenet.py:A --workdir=gs://BUCKET/one_shot_a

Modules: `search` and `retrain` (the binaries), `flags` (--config, --workdir,
--print_config, the process flags, --help; parsed before TensorFlow is
imported), `errors` (the user errors: a short message and exit status 2),
`default_config` and `config_checks` (ml_collections configs), `loop` (plan,
optimizer, the fit loop), `workdir` (files of a run, checkpoints), `runtime`
(the engine: tf.distribute on TensorFlow, keras.distribution and several
processes on JAX), `strategies` (tf.distribute strategies by name),
`input_pipeline` (tf.data over tfds), `fashion_mnist` (the offline
Fashion-MNIST reader), `report` (the summary both binaries print),
`startup` (the console scripts' entry: flags first, then TensorFlow quietly,
then the binary). The library (`figs_tf`) never imports this package.
"""
