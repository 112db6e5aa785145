"""The worker process: imports the jobs package once and runs attempts sent over a pipe."""
