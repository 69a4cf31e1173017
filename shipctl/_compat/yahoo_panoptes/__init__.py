"""shipctl's stand-in for the names Panoptes polling plugins import (yahoo/panoptes 1.3.x does not import on
Python >= 3.7). Only on ``sys.path`` while shipctl runs plugins, and only when the real package is absent."""

SHIPCTL_COMPAT = True
