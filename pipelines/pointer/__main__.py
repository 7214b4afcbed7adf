"""``python -m pipelines.pointer train|evaluate|presets|report ...``"""

import sys

from pipelines.pointer import main

sys.exit(main())
