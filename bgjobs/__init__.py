"""bgjobs: the library shared by the daemon (`bgjobd`), the CLI (`bgjobctl`) and jobs.

Jobs import `Retry` and `Fail` from here to decide their own retries, and `progress` to say
how far they got.
"""

from bgjobs.progress import progress
from bgjobs.signals import Fail, Retry

__version__ = "0.1.0"
__all__ = ["Fail", "Retry", "__version__", "progress"]
