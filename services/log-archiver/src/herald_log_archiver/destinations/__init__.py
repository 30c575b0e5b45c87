"""The log archiver's destination."""
