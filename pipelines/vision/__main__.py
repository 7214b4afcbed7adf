"""``python -m pipelines.vision train|evaluate|presets ...``"""

import sys

from pipelines.vision import main

sys.exit(main())
