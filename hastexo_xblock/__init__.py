"""hastexo_xblock: real lab environments inside Open edX course units.

The XBlock class is imported lazily so that the workers and the gateway can
import the package without loading XBlock machinery they do not use.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "HastexoXBlock":
        from .block import HastexoXBlock

        return HastexoXBlock
    raise AttributeError(name)
