from kindling.cli import main

main()
