"""Workload registry: name -> class. Adding a workload is one module and one line here."""

from .base import Workload
from .memcached import Memcached
from .nginx import Nginx
from .redis import Redis

WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in (Redis, Nginx, Memcached)}
