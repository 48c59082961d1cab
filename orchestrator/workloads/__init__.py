"""Workload registry: name -> class. Adding a workload is one module and one line here."""

from .base import Workload
from .memcached import Memcached
from .netserver import Netserver
from .nginx import Nginx
from .redis import Redis
from .sysbench import Sysbench

WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in (Redis, Nginx, Memcached, Netserver, Sysbench)}
