from riskloop.cli.app import main

main()
