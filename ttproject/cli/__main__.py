import sys

from ttproject.cli import main

sys.exit(main())
