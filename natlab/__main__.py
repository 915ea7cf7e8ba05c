from natlab.cli import main

main()
