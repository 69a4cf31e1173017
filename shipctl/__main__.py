from shipctl.cli import main

main()
