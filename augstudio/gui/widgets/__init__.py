"""Widgets shared by the panels: parameter fields built from op ``Param`` declarations, image views and the
model picker."""
