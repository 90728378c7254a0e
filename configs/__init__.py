"""The policy pack (``policy.yaml``) and the world presets (``worlds/*.yaml``).

Installed as the package data of ``engine_core.configs`` and read with
``importlib.resources``, so a wheel carries them and never looks outside itself.
"""
