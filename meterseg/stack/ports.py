"""Free local ports for private stacks, workers and test servers.

Why not "bind port 0 and close": the kernel then hands out a port of its
ephemeral range, which (a) may be given again to the next such call once
closed (two listeners of one broker on the same port), and (b) may be taken
by an outgoing connection before our server binds it. Ports here come from
below the ephemeral range (Linux: 32768-60999) and away from the stack's
fixed ports, and one process never hands out the same port twice.
"""

from __future__ import annotations

import random
import socket

#: where free ports are drawn from: below the kernel's ephemeral range, clear of the stack's fixed ports
PORT_RANGE = (12_000, 20_000)

_handed_out: set[int] = set()


def free_port() -> int:
    """A local TCP port nobody listens on now, never returned before by this process.

    Examples:
        >>> a, b = free_port(), free_port()
        >>> a != b and all(PORT_RANGE[0] <= p < PORT_RANGE[1] for p in (a, b))
        True
    """
    draw = random.Random()
    for _ in range(10_000):
        port = draw.randrange(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")
