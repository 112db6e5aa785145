"""bgjobd: the daemon that runs allow-listed jobs in worker processes."""
