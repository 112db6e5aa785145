import sys

from bgjobd.worker.main import main

sys.exit(main(sys.argv[1:]))
