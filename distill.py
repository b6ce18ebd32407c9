"""Label a corpus with a teacher: ``python distill.py ...`` is ``plex label ...``."""

import sys

from plex.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
