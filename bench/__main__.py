import importlib
import sys

#: ``python -m bench <name>``: the scenarios with a module of their own.
SCENARIOS = (
    "coldstart",
    "heavy",
    "density",
    "burst",
    "cluster",
    "counting",
    "urls",
    "events",
    "streaming",
    "sqs",
    "versus",
)


def _main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name in SCENARIOS:
        module = importlib.import_module(f"bench.{name}")
        return int(module.main(sys.argv[2:]) or 0)
    from bench.run import main

    return main()


sys.exit(_main())
