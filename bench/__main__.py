import sys


def _main() -> int:
    if sys.argv[1:2] == ["coldstart"]:
        from bench.coldstart import main as coldstart

        return coldstart(sys.argv[2:])
    from bench.run import main

    return main()


sys.exit(_main())
