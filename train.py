"""Train the PLEX student: ``python train.py ...`` is ``plex train ...``."""

import sys

from plex.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
