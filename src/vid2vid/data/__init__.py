"""The data path: folder layout, label rendering, video I/O, datasets, preparation and synthetic data."""


class DataError(ValueError):
    """A problem with a data file or folder; the message starts with the path it concerns."""
