"""``python -m actclust.cli``: the same as the ``actclust`` command."""

import sys

from . import main

sys.exit(main())
