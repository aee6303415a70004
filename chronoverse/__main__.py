from chronoverse.cli import main

main()
