"""Writers for the formats pairgen reads, used by the tests to build real files.

Each writer produces bytes in the format's real encoding (binary PLY, glb with
embedded images, Detour navmesh sets), so the loaders are tested on the same
byte layout the datasets ship.
"""
