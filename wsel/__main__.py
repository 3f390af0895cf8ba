from wsel.cli import main

main()
