import sys

from oneserver.cli import main

sys.exit(main())
