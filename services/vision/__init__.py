"""Vision: VAN, BiFormer and Agent Attention as timm models, their data loaders and the `/vision` app.

Importing this package registers every architecture in timm's registry, so that after
``import services.vision`` ``timm.create_model("van_b0")`` (or ``"biformer_tiny"``, ``"agent_deit_tiny"``,
``"agent_swin_tiny"``, the other published variants and the ``*_small_input`` ones) builds our model.
"""

from . import agent, biformer, van  # noqa: F401 - registers the architectures in timm
