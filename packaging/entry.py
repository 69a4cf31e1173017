"""The frozen executable's entry point (PyInstaller runs this as __main__)."""

from shipctl.fastcli import main

main()
