"""Scene loading, viewpoint sampling and render backends.

``renderers.scene`` holds the in-memory scene (Y-up world, metres);
``renderers.sources`` one loader per scene format behind one registry.
"""
