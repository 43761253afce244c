"""CroCo pre-training on pairgen's Parquet shards.

It reads only the shard format (DESIGN.md); it never imports the renderers.
"""
