"""The installed version of forewarn, read once from the package metadata.

Modules that stamp a version on what they write (telemetry rows, manifests, snapshots) import it from
here, never from ``forewarn/__init__``, so no module depends on the package's public face.

Example::

    >>> from forewarn._version import __version__
    >>> isinstance(__version__, str)
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("forewarn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
