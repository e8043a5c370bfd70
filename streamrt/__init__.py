"""streamrt: real-time streaming speech.

Import what you need from the submodules; importing ``streamrt`` itself loads nothing heavy.
"""

__version__ = "0.1.0"
