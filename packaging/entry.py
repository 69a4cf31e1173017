"""The frozen executable's entry point (PyInstaller runs this as __main__)."""

from shipctl.cli import main

main()
