"""Loading other implementations' configs and checkpoints (the only place that knows their names)."""
