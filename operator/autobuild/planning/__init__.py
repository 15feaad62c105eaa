"""The pure core: rule matching, tag rendering, build plans and the Kaniko Job manifest. No I/O."""
