import sys

from bgjobctl.cli import main

sys.exit(main())
