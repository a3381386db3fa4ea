"""Test support shared by tests/ and bench/ (importable as ``support``: pyproject.toml
puts tests/ on pytest's ``pythonpath``).

- ``support.mountutil``: real mounts (loop images, tmpfs, bind, FUSE daemons); no pytest.
- ``support.faultfs``: the FUSE passthrough with injectable latency and faults (own process).
- ``support.registry``: ``mount_fixture`` (fixtures that mount mark their tests ``root``)
  and ``skip_or_fail``.
- ``support.guard``: ``tree_digest`` and the ``outside_unchanged`` fixture.
"""
