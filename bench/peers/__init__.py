"""The peer systems measured side by side with bgjobs in the same run."""
