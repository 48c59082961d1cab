"""Platforms register by subclassing platforms.base.Platform with a kind; see docs/extending.md."""

from .base import Instance, Platform, PlatformOptions

__all__ = ["Instance", "Platform", "PlatformOptions"]
