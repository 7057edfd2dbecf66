"""figs_tf: Fine-Grained Stochastic Architecture Search (FiGS) for TensorFlow 2 / Keras 3."""

import setuptools

setuptools.setup(
    name="figs_tf",
    version="0.1.0",
    description="FiGS: learn per-layer widths of any Keras model under a parameter or FLOP budget.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["figs_tf", "figs_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.7",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tfds 4.9 needs it to download and prepare datasets
        "absl-py",
        "ml-collections",
        "numpy",
        "tensorboard",
        "matplotlib",
    ],
    entry_points={
        "console_scripts": [
            "figs-search=figs_tf.train.startup:search",
            "figs-retrain=figs_tf.train.startup:retrain",
        ],
    },
    extras_require={
        # keras-hub: tests of its ViT and BERT backbones. figs_tf.handlers.keras_hub reads keras_hub's
        # layer internals, checked on 0.32 (which needs Keras >= 3.15 and Python >= 3.11). hypothesis pinned:
        # tests/test_fuzz_graphs.py checks the coverage of its derandomized draws, which change between releases.
        "test": ["pytest", "pytest-xdist", "hypothesis==6.170.27", "keras-hub>=0.32,<0.33; python_version >= '3.11'"],
        "jax": ["jax"],
    },
)
