import sys

from evtlm.cli.main import main

sys.exit(main())
