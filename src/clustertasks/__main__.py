from clustertasks.cli.main import main

main()
