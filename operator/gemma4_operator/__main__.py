import sys

from gemma4_operator.cli import main

sys.exit(main())
