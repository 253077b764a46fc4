"""Widgets shared by the panels: parameter fields built from op ``Param`` declarations and image views.
(Models are picked per panel but all loaded through ``ctx.models``, the one model-loading job.)"""
