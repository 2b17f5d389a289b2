"""vid2vid: video-to-video synthesis (vid2vid and few-shot vid2vid) in plain PyTorch."""

from vid2vid.checkpoint import load_generator, save_generator

__version__ = "0.1.0"
__all__ = ["load_generator", "save_generator", "__version__"]
