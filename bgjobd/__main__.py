import sys

from bgjobd.cli import main

sys.exit(main())
