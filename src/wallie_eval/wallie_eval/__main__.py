import sys

from wallie_eval.cli import main

sys.exit(main())
