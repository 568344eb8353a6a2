import sys

from gemma4_operator.cli.main import main

sys.exit(main())
