"""`python -m greyglass` (and `torchrun ... -m greyglass sae train ...`): the `greyglass` command."""

import os
import sys

from .cli import main

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.exit(main())
