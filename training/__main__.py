"""`python -m training` is `train-kit`."""

from training.cli import main

main()
