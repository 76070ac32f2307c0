"""Ray, imported only when asked for: the optional ``seqrec[ray]`` extra, connecting to a cluster, and
checking that every node sees the paths a job needs.

``import seqrec`` and every command without Ray work on the base install; the Ray commands
(``seqrec sweep``, ``seqrec train --engine rllib``) call :func:`require_ray` first and get a
one-line error that names the extra when it is missing.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from seqrec.infra.errors import SeqrecError

__all__ = ["INSTALL_HINT", "check_nodes_see", "connect_ray", "require_ray"]

INSTALL_HINT = 'pip install "seqrec[ray]"'
CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP answer from ``--address`` before saying it is unreachable."""


def require_ray():
    """The ``ray`` module, or a one-line :class:`SeqrecError` saying how to install it."""
    try:
        import ray
        import ray.tune  # noqa: F401 -- the extra installs both; a partial install is reported here
    except ImportError as err:
        raise SeqrecError(f"this command needs Ray ({err.name or 'ray'} is not installed): {INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str) -> None:
    """A one-line error unless ``HOST:PORT`` accepts a TCP connection (ray.init would wait far longer)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SeqrecError(f"--address must be auto or HOST:PORT (e.g. 10.0.0.1:6379), not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise SeqrecError(f"cannot reach a Ray cluster at {address} ({err.strerror or type(err).__name__}); "
                          "start one with `ray start --head` there, or leave out --address for a local Ray") from None  # fmt: skip


def connect_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to the Ray cluster at ``address`` (``auto``: the one this machine belongs to), or
    start a local one (``num_cpus``: its CPUs, default all); reuse a connection already open.

    :return: the ``ray`` module, initialised.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None and address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SeqrecError(f"cannot connect to Ray at {address or 'a new local instance'}: {first}") from None
    return ray


def _probe(paths: list[str]) -> tuple[str, list[str]]:
    """On one node: its address and the paths it cannot see."""
    import ray

    return ray.util.get_node_ip_address(), [p for p in paths if not os.path.exists(p)]


def check_nodes_see(ray, paths: list[Path]) -> None:
    """A one-line error unless every alive node sees every path (the sweep folder, the bundles)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote([str(p) for p in paths])
                       for n in nodes])  # fmt: skip
    for ip, missing in answers:
        if missing:
            what = "bundle" if Path(missing[0]) != paths[0] else "sweep folder"
            raise SeqrecError(f"{what} {missing[0]} does not exist on the Ray node at {ip}: every node needs the bundles and "
                              "--out at the same paths (one machine, or a shared file system)")  # fmt: skip
