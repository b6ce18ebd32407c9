import sys

from plex.cli import main

sys.exit(main())
