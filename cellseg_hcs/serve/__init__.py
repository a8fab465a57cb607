"""Serving a warm model to other programs, CellProfiler first.

``cellseg-hcs serve`` (:func:`serve`) keeps one model loaded and answers local clients over
a token-protected socket; :class:`Client` is the Python client and ``plugins/runcellseghcs.py``
the CellProfiler one. :class:`Segmenter` is what runs behind both the server and the
in-process CellProfiler module.
"""

from .client import Client, ServerError
from .engine import Segmenter
from .server import SegmentServer, default_connection_file, serve

__all__ = [
    "Client",
    "SegmentServer",
    "Segmenter",
    "ServerError",
    "default_connection_file",
    "serve",
]
