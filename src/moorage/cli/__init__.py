"""The `moorage` command."""

from moorage.cli.main import main

__all__ = ["main"]
