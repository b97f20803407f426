from bundlegate.cli import main

main()
