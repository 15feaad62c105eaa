"""Auto-build on push: verified webhook receivers, Docker Hub's trigger URL, and polling.

- :mod:`repokey`: one comparable key per repository (``spec.source.repo`` and deliveries);
- :mod:`signatures`: HMAC-SHA256 (GitHub, Bitbucket) and token (GitLab) checks;
- :mod:`deliveries`: provider payloads -> push events (pure);
- :mod:`trigger`: Docker Hub's build trigger bodies -> refs to build (pure);
- :mod:`targets`: the AutomatedBuilds a delivery may build, as the store indexes them;
- :mod:`receiver`: the aiohttp application and its start/stop helper;
- :mod:`poller`: ``spec.source.pollInterval`` with ``git ls-remote``.
"""
