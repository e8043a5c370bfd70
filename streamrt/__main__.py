from streamrt.cli import main

main()
