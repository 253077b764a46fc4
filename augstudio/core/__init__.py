"""The Qt-free core: pure Python + torch. Never imports Qt (a test proves it)."""
