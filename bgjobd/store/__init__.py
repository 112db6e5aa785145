"""Where jobs are kept: an interface (`base`) and its backends."""
