"""Workloads register by subclassing workloads.base.Workload with a kind; see docs/extending.md."""

from .base import Workload, WorkloadOptions

__all__ = ["Workload", "WorkloadOptions"]
