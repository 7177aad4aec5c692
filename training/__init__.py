"""The training kit: data block API, learner and exports, driven by the `train-kit` CLI."""
