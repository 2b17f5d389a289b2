"""Building blocks shared by both generators (they know nothing of video)."""
