from .base import Host, CommandResult
from .local import LocalHost

__all__ = ["CommandResult", "Host", "LocalHost"]
