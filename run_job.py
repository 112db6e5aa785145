#!/usr/bin/env python3
"""Run one allow-listed job now, in the foreground, without a daemon:

    python run_job.py LessonCreatedService handle "English Grammar 101" [DELAY]

See `python run_job.py --help`. Exit codes: 0 success, 1 failed, 2 usage, 3 refused.
"""

import sys

from bgjobd.oneshot import main

if __name__ == "__main__":
    sys.exit(main())
