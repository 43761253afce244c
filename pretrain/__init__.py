"""CroCo pre-training on pairgen's Parquet shards.

It reads only the shard format (docs/design.md), whose schema ``manifests.pairs``
declares: this package may import ``manifests``, never ``pairgen`` or ``renderers``.

Modules: ``data`` (:class:`~pretrain.data.PairStream`, the dataset), ``shards``,
``plan``, ``augment``, ``memory`` (its parts), ``model``, ``engine`` (one optimizer
step), ``checkpoint`` (saving, checked loading, the model a checkpoint holds),
``outputs`` (logs and reconstruction PNGs), ``train`` (a run), ``probe``, ``cli``.
"""
