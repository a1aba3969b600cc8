"""``python -m benchmarks``: see ``benchmarks.run``.

The measuring code lives in an importable module so that the processes the append
benchmark spawns can find their worker function (``__main__`` cannot be imported).
"""

from benchmarks.run import main

raise SystemExit(main())
