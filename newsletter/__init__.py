"""The monthly research newsletter system.

A library (content, render, store, delivery, web) with a thin ``newsletter`` CLI over it.
"""

__version__ = "0.1.0"
