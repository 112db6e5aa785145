import sys

from bgjobd.filemodes import keep_others_out
from bgjobd.worker.main import main

keep_others_out()

sys.exit(main(sys.argv[1:]))
