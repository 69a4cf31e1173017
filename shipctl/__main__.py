from shipctl.fastcli import main

main()
