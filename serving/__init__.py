"""The serving microservice. Imports nothing from `training` (the one rule of DESIGN.md)."""
