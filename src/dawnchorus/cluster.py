"""Joining a Ray cluster, for the work that outgrows one machine (archive jobs, training sweeps).

Ray is an optional extra (``pip install 'dawnchorus[ray]'``); nothing imports it otherwise.
"""

from __future__ import annotations

import os

from .errors import InputError

_INSTALL = "the Ray engine needs the optional extra: pip install 'dawnchorus[ray]'"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--engine ray: Ray is not installed; {_INSTALL}") from None
    return ray


def connect(*, address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``ray start --head`` printed it; ``auto``: the local
    node's), or start a private one on this machine when None."""
    ray = import_ray()
    if ray.is_initialized():
        return
    options = {"address": address} if address else {"num_cpus": num_cpus or os.cpu_count(), "include_dashboard": False}
    try:
        ray.init(log_to_driver=False, configure_logging=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"--ray-address {address}: cannot connect to a Ray cluster there ({exc}); start one with "
                         "'ray start --head' or leave --ray-address out to run Ray on this machine") from None
