"""The emailer's destination."""
