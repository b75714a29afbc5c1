"""Value plausibility rules on readings: negative consumption and voltage range.

References:
    Electricity meter data VEE practice (validation, estimation and editing),
    e.g. the Ontario IESO MDM/R VEE standard: negative interval values are
    valid only for net-metered (export) meters; voltage is checked against
    the supply tolerance, here ±10 % of nominal (EN 50160).

Examples:
    >>> import numpy as np
    >>> negative(np.array([-0.1, -0.1, 0.2]), np.array([False, True, False]), 0.0).tolist()
    [True, False, False]
    >>> voltage_out(np.array([230.0, 260.0, 200.0]), np.array([230.0] * 3), 0.1).tolist()
    [False, True, True]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.columns import BOOL, F64


def negative(kwh_import: F64, has_export: npt.NDArray[np.bool_], tolerance: float) -> BOOL:
    """Negative net consumption on a meter that cannot export."""
    out: BOOL = (kwh_import < -tolerance) & ~has_export
    return out


def voltage_out(voltage: F64, nominal: F64, tolerance: float) -> BOOL:
    """Voltage outside ``nominal × (1 ± tolerance)``."""
    out: BOOL = np.abs(voltage - nominal) > tolerance * nominal
    return out
