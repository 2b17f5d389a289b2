"""The parts of training that `vid2vid.train`'s loop reads: configs and schedules, the networks, the per-frame
update, the weight average, data-parallel helpers, checkpoints and the log."""


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or a run folder that does not fit); the message says what to do."""
