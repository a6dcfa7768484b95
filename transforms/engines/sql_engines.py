"""The engine names, where the CLI reads them until it reads `transforms.engines.registry`."""

from transforms.engines.registry import ENGINES

__all__ = ["ENGINES"]
