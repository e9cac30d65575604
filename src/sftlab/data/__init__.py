"""Reading labeled data: tabular files with errors that name the file and line, and batching."""
