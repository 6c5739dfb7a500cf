"""`python -m wallie_eval`: the spoken QA evaluation with the in-process engines."""

import sys

from wallie_eval.cli import main

sys.exit(main())
