"""Expected errors: the CLI prints their message on one line and exits with code 2, no traceback."""


class UsageError(Exception):
    """The user asked for something that cannot work (bad option, wrong path, missing file)."""


class DataError(Exception):
    """The data itself is unusable as a whole (not an img2dataset folder, no samples, no WordNet)."""
