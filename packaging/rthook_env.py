# PyInstaller runtime hook: runs before shipctl's code in the frozen executable.
# The bootloader points LD_LIBRARY_PATH at the bundle so that the bundled interpreter finds its own libraries.
# Children (shell and script monitors, a python3 script) must not inherit it: they would load the bundle's
# OpenSSL, SQLite or libz instead of the system's. The dynamic loader of this process read the variable when
# it started, so putting the user's own value back changes nothing for shipctl itself.
import os

for _var in ("LD_LIBRARY_PATH",):
    _orig = os.environ.pop(_var + "_ORIG", None)
    if _orig is not None:
        os.environ[_var] = _orig
    else:
        os.environ.pop(_var, None)
